import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PYTHON as TEST_PYTHON } from '../../test/support/python.js';
import { checkEnvironment, RequirementChecks, withSdkRequirements } from './python-env.js';

const work = mkdtempSync(join(tmpdir(), 'pollen-pyenv-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** An interpreter wrapper that hides `packaging`, so the fallback comparator answers. */
function withoutPackaging(): string {
  const shadow = join(work, 'shadow');
  mkdirSync(join(shadow, 'packaging'), { recursive: true });
  writeFileSync(join(shadow, 'packaging', '__init__.py'), 'raise ImportError("hidden")\n');
  const wrapper = join(work, 'python-nopackaging');
  writeFileSync(wrapper, `#!/bin/sh\nPYTHONPATH=${shadow} exec ${TEST_PYTHON} "$@"\n`);
  chmodSync(wrapper, 0o755);
  return wrapper;
}

describe('requirement checks against the site interpreter', () => {
  const requirements = [
    'numpy>=1.20',
    'NumPy < 1.0',
    'protobuf ~= 3.0',
    'grpcio==1.*',
    'surely-not-installed-pollen-dist>=1',
    "numpy>=99; python_version < '3.0'",
  ];

  it.each([
    ['packaging (PEP 440)', () => TEST_PYTHON],
    ['the fallback comparator', withoutPackaging],
  ])('reads installed versions with %s, without importing the packages', async (_, python) => {
    const check = await checkEnvironment(python(), requirements);
    const byReq = Object.fromEntries(check.results.map((r) => [r.requirement, r]));
    expect(check.ok).toBe(false);
    expect(check.pythonVersion).toMatch(/^3\.\d+\.\d+$/);
    expect(byReq['numpy>=1.20']).toMatchObject({
      name: 'numpy',
      ok: true,
      found: expect.stringMatching(/^\d/),
    });
    expect(byReq['NumPy < 1.0']).toMatchObject({ name: 'numpy', ok: false });
    expect(byReq['NumPy < 1.0']?.note).toContain('does not satisfy');
    expect(byReq['protobuf ~= 3.0']?.ok).toBe(byReq['protobuf ~= 3.0']?.found?.startsWith('3.'));
    expect(byReq['grpcio==1.*']?.ok).toBe(true);
    expect(byReq['surely-not-installed-pollen-dist>=1']).toMatchObject({
      found: null,
      ok: false,
      note: 'not installed',
    });
  });

  it('evaluates markers with packaging: a requirement for another interpreter is not needed', async () => {
    const check = await checkEnvironment(TEST_PYTHON, ["numpy>=99; python_version < '3.0'"]);
    expect(check).toMatchObject({
      ok: true,
      results: [
        { ok: true, note: expect.stringContaining('not needed') },
        { name: 'grpcio', ok: true },
        { name: 'protobuf', ok: true },
      ],
    });
  });

  it('refuses with APP_REQUIREMENTS_MISSING naming each distribution, its version and the interpreter', async () => {
    const checks = new RequirementChecks(TEST_PYTHON);
    const err = await checks
      .require(['numpy<1.0', 'surely-not-installed-pollen-dist'], 'tiny 1.0')
      .catch((e) => e);
    expect(err.code).toBe('APP_REQUIREMENTS_MISSING');
    expect(err.message).toMatch(
      /numpy<1\.0 \(found \d[^)]*\), surely-not-installed-pollen-dist \(not installed\) in \/\S+ \(Python 3\./,
    );
    expect(err.hint).toContain('pollen env check');
    await expect(checks.require(['numpy>=1.0'], 'tiny 1.0')).resolves.toBeUndefined();
  });

  it("checks the Python SDK's own requirements too, each once, the app's clause first", () => {
    expect(withSdkRequirements([])).toEqual(['numpy', 'grpcio', 'protobuf']);
    expect(withSdkRequirements(['NumPy>=1.24', 'torch'])).toEqual([
      'NumPy>=1.24',
      'torch',
      'grpcio',
      'protobuf',
    ]);
  });

  it('says PYTHON_NOT_FOUND for an interpreter that does not run', async () => {
    await expect(checkEnvironment(join(work, 'no-python'), [])).rejects.toMatchObject({
      code: 'PYTHON_NOT_FOUND',
    });
    const broken = join(work, 'broken-python');
    writeFileSync(broken, '#!/bin/sh\necho "bad interpreter" >&2\nexit 3\n');
    chmodSync(broken, 0o755);
    await expect(checkEnvironment(broken, ['numpy'])).rejects.toThrow(
      /broken-python cannot run: bad interpreter/,
    );
  });
});
