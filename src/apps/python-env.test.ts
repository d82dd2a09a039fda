import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PYTHON as TEST_PYTHON } from '../../test/support/python.js';
import {
  checkEnvironment,
  pythonAppVariables,
  RequirementChecks,
  withSdkRequirements,
} from './python-env.js';

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

describe('the allocator of an app process', () => {
  // Rounds of a 32 MiB model received as an app receives it (each 4 MiB chunk a transient bytes
  // object copied into its array): the pages the third round touches anew.
  const rounds = `
import os, resource, numpy as np
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    before = faults()
    arrays = []
    for _ in range(8):
        chunk = os.urandom(16) * (1 << 18)
        array = np.empty(4 << 20, dtype=np.uint8)
        array[:] = np.frombuffer(chunk, dtype=np.uint8)
        arrays.append(array)
    del arrays, chunk, array
print(faults() - before)
`;
  const newPages = (env: Record<string, string>): number => {
    const r = spawnSync(TEST_PYTHON, ['-c', rounds], {
      env: { PATH: process.env.PATH ?? '', ...env },
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    return Number(r.stdout.trim());
  };

  it("reuses a freed round's memory for the next round instead of faulting in new pages", () => {
    const app = pythonAppVariables({
      appIoUrl: 'http://127.0.0.1:1',
      runId: 'r',
      token: 't',
      ref: 'm:app',
      bundleDir: work,
    });
    // 32 MiB is 8192 pages of 4 KiB: by default most are new again.
    expect(newPages({})).toBeGreaterThan(1000);
    expect(
      newPages({
        MALLOC_MMAP_THRESHOLD_: app.MALLOC_MMAP_THRESHOLD_!,
        MALLOC_TRIM_THRESHOLD_: app.MALLOC_TRIM_THRESHOLD_!,
      }),
    ).toBeLessThan(200);
  });
});
