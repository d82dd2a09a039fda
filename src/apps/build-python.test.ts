import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildApp } from './build.js';
import { readBundle } from './bundle.js';

const work = mkdtempSync(join(tmpdir(), 'pollen-build-py-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const PYPROJECT = `[project]
name = "tiny-py"
version = "0.1.0"
dependencies = ["numpy>=1.24", "torch >= 1.13 ; python_version >= '3.8'"]

[tool.pollen.app]
exclude = ["data/raw", "*.log"]

[tool.pollen.app.components]
serverapp = "tiny_py.server_app:app"
clientapp = "tiny_py.client_app:app"

[tool.pollen.app.config]
num-server-rounds = 3
lr = 0.1
mode = "fast"
`;

function pyApp(name: string, files: Record<string, string> = {}): string {
  const dir = join(work, name);
  const all: Record<string, string> = {
    'pyproject.toml': PYPROJECT,
    'tiny_py/__init__.py': '',
    'tiny_py/client_app.py': 'app = None\n',
    'tiny_py/server_app.py': 'app = None\n',
    'tiny_py/__pycache__/client_app.cpython-311.pyc': 'x',
    'data/raw/big.bin': 'raw',
    'data/keep.txt': 'kept',
    'run.log': 'log',
    '.venv/bin/python': 'x',
    'dist/old.pollen': 'x',
    ...files,
  };
  for (const [path, text] of Object.entries(all)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

describe('pollen build of a Python app (pyproject.toml)', () => {
  it('bundles the package files with a python manifest, the same bytes twice', async () => {
    const dir = pyApp('same');
    const a = await buildApp(dir, { outDir: join(work, 'out-a') });
    const b = await buildApp(dir, { outDir: join(work, 'out-b') });
    expect(readFileSync(a.path)).toEqual(readFileSync(b.path));
    expect(a.hash).toBe(b.hash);
    expect(a.path.endsWith('tiny-py-0.1.0.pollen')).toBe(true);
    const { manifest } = readBundle(readFileSync(a.path));
    expect(manifest).toMatchObject({
      runtime: 'python',
      serverapp: 'tiny_py.server_app:app',
      clientapp: 'tiny_py.client_app:app',
      requirements: ['numpy>=1.24', "torch >= 1.13 ; python_version >= '3.8'"],
      config: { 'num-server-rounds': 3, lr: 0.1, mode: 'fast' },
    });
    expect(manifest.files.map((f) => f.path)).toEqual([
      'data/keep.txt',
      'pyproject.toml',
      'tiny_py/__init__.py',
      'tiny_py/client_app.py',
      'tiny_py/server_app.py',
    ]);
  });

  it('takes a built-in ServerApp with its initial arrays from the bundle', async () => {
    const toml = PYPROJECT.replace('"tiny_py.server_app:app"', '"pollen:FedAvg"').replace(
      'mode = "fast"',
      'initial-arrays = "model.npz"',
    );
    const built = await buildApp(pyApp('builtin', { 'pyproject.toml': toml, 'model.npz': 'npz' }));
    expect(built.manifest.serverapp).toBe('pollen:FedAvg');
  });

  it.each([
    [
      'no clientapp',
      (t: string) => t.replace(/clientapp = .*\n/, ''),
      '[tool.pollen.app.components] clientapp: is missing',
    ],
    [
      'a module that is not there',
      (t: string) => t.replace('tiny_py.client_app', 'tiny_py.nothere'),
      'no module tiny_py.nothere',
    ],
    [
      'a built-in ClientApp',
      (t: string) => t.replace('"tiny_py.client_app:app"', '"pollen:FedAvg"'),
      'built-in ServerApps only',
    ],
    [
      'an unknown built-in',
      (t: string) => t.replace('"tiny_py.server_app:app"', '"pollen:FedXgbBagging"'),
      'no such built-in ServerApp',
    ],
    [
      'a bad requirement',
      (t: string) => t.replace('"numpy>=1.24"', '">=1.24"'),
      '[project] dependencies: ">=1.24"',
    ],
    ['no version', (t: string) => t.replace('version = "0.1.0"\n', ''), '[project] version'],
    [
      'a table as config value',
      (t: string) => t.replace('lr = 0.1', 'lr = { a = 1 }'),
      '[tool.pollen.app.config] lr',
    ],
    [
      'an unknown key',
      (t: string) => t.replace('[tool.pollen.app]\n', '[tool.pollen.app]\nservreapp = "x"\n'),
      'servreapp: unknown key',
    ],
    ['invalid TOML', (t: string) => `${t}\n[[[`, 'not valid TOML'],
    [
      'missing initial arrays',
      (t: string) =>
        t
          .replace('"tiny_py.server_app:app"', '"pollen:FedProx"')
          .replace('mode = "fast"', 'initial-arrays = "nope.npz"'),
      'initial-arrays: "nope.npz" is not a file',
    ],
  ])('refuses %s, naming the file and the key', async (name, edit, message) => {
    const dir = pyApp(`bad-${name.replace(/\W+/g, '-')}`, { 'pyproject.toml': edit(PYPROJECT) });
    const err = await buildApp(dir).catch((e) => e);
    expect(err.code).toBe('APP_INVALID');
    expect(err.message).toContain(join(dir, 'pyproject.toml'));
    expect(err.message).toContain(message);
    expect(err.hint).toContain('pyproject.toml');
  });

  it('refuses a link and a file name a bundle cannot hold', async () => {
    const linked = pyApp('link');
    symlinkSync('/etc/hostname', join(linked, 'tiny_py', 'host'));
    await expect(buildApp(linked)).rejects.toThrow(/tiny_py\/host: is not a regular file/);
    const spaced = pyApp('space', { 'my notes.txt': 'x' });
    await expect(buildApp(spaced)).rejects.toThrow(/my notes.txt: cannot be in a bundle/);
  });
});
