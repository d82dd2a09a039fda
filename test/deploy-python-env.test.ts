/**
 * `pollen deploy python-env` writes a script that shellcheck passes and that, run for real with a
 * local wheelhouse (a wheel built here, offline), makes a virtual environment holding the
 * requirement — from the wheelhouse alone, never the package index.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollenInProcess, tempDir } from './support/cli.js';

import { PYTHON } from './support/python.js';

const tmp = tempDir('pollen-python-env-');
afterAll(tmp.cleanup);

/** A minimal wheel (a package, its metadata and its RECORD), zipped as pip expects. */
function buildWheel(dir: string, name: string, version: string): void {
  const script = `
import sys, zipfile
d, name, version = sys.argv[1:4]
info = f"{name}-{version}.dist-info"
files = {
  f"{name}/__init__.py": f"VERSION = {version!r}\\n",
  f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n",
  f"{info}/WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
files[f"{info}/RECORD"] = "".join(f"{p},,\\n" for p in files) + f"{info}/RECORD,,\\n"
with zipfile.ZipFile(f"{d}/{name}-{version}-py3-none-any.whl", "w") as z:
  for p, text in files.items():
    z.writestr(p, text)
`;
  const r = spawnSync(PYTHON, ['-c', script, dir, name, version], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

describe('pollen deploy python-env', () => {
  const out = join(tmp.dir, 'site-env');
  const requirements = join(tmp.dir, 'requirements.txt');

  it('writes a script shellcheck passes', async () => {
    writeFileSync(requirements, 'pollen_site_helper==0.3\n');
    const r = await pollenInProcess([
      'deploy',
      'python-env',
      '--requirements',
      requirements,
      '--wheelhouse',
      'wheels',
      '--venv',
      join(tmp.dir, 'venv'),
      '-o',
      out,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json<{ files: { path: string; mode: string }[] }>().files).toEqual([
      { path: 'setup-python-env.sh', mode: '0755' },
      { path: 'requirements.txt', mode: '0644' },
    ]);
    const check = spawnSync(
      'shellcheck',
      ['--shell=sh', '--severity=style', join(out, 'setup-python-env.sh')],
      {
        encoding: 'utf8',
      },
    );
    expect(check.stdout).toBe('');
    expect(check.status).toBe(0);
  });

  it('makes the environment from the wheelhouse alone', () => {
    mkdirSync(join(out, 'wheels'));
    buildWheel(join(out, 'wheels'), 'pollen_site_helper', '0.3');
    const run = spawnSync('sh', [join(out, 'setup-python-env.sh')], {
      encoding: 'utf8',
      // No pollen on PATH (the script then skips `pollen env check`); no index reachable either.
      env: { PATH: '/usr/bin:/bin', PYTHON, PIP_INDEX_URL: 'http://127.0.0.1:9/none', HOME: tmp.dir },
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const venvPython = join(tmp.dir, 'venv', 'bin', 'python');
    expect(run.stdout).toContain(`ready: ${venvPython}`);
    const probe = spawnSync(
      venvPython,
      ['-c', 'import pollen_site_helper, numpy; print(pollen_site_helper.VERSION)'],
      {
        encoding: 'utf8',
      },
    );
    // The wheel's package, and numpy from the system's site packages.
    expect(probe.stdout.trim(), probe.stderr).toBe('0.3');
  });

  it('refuses a requirements file the SuperNode could not read', async () => {
    writeFileSync(requirements, '--extra-index-url https://example.org\n');
    const r = await pollenInProcess([
      'deploy',
      'python-env',
      '--requirements',
      requirements,
      '-o',
      out,
      '--json',
    ]);
    expect(r.code).toBe(3);
    expect(r.json<{ error: { code: string } }>().error.code).toBe('APP_INVALID');
  });
});
