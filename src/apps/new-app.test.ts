import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollenErrorOf } from '../../test/support/errors.js';
import { PACKAGE_DIR } from '../version.js';
import { APP_TEMPLATES, createApp, type NewAppOptions } from './new-app.js';

const work = mkdtempSync(join(tmpdir(), 'pollen-new-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const refusal = (o: NewAppOptions) => pollenErrorOf((async () => createApp(o))());

describe('createApp', () => {
  it('writes the TypeScript template with the name and a link to this Pollen filled in', () => {
    const app = createApp({ name: 'my-app', template: 'ts', parentDir: work });
    expect(app.dir).toBe(join(work, 'my-app'));
    expect(app.files).toEqual([
      'README.md',
      '.gitignore',
      'package.json',
      'src/client.ts',
      'src/server.ts',
      'src/task.ts',
      'tsconfig.json',
    ]);
    const pkg = JSON.parse(readFileSync(join(app.dir, 'package.json'), 'utf8'));
    expect(pkg.name).toBe('my-app');
    expect(pkg.dependencies).toEqual({ pollen: `file:${PACKAGE_DIR}` });
    expect(pkg.pollen).toMatchObject({ serverapp: 'src/server.ts', clientapp: 'src/client.ts' });
    expect(pkg.pollen.config).toMatchObject({ 'num-rounds': 3, 'min-nodes': 2, seed: 42 });
    expect(readFileSync(join(app.dir, 'README.md'), 'utf8')).toMatch(/^# my-app\n/);
    for (const file of app.files) expect(readFileSync(join(app.dir, file), 'utf8')).not.toContain('{{');
  });

  it('fills an empty folder that already exists', () => {
    mkdirSync(join(work, 'empty'));
    expect(createApp({ name: 'empty', template: 'ts', parentDir: work }).files).toContain('package.json');
  });

  it('never writes into a folder that holds anything, and changes nothing there', async () => {
    mkdirSync(join(work, 'taken'));
    writeFileSync(join(work, 'taken', 'notes.txt'), 'mine');
    const e = await refusal({ name: 'taken', template: 'ts', parentDir: work });
    expect(e).toMatchObject({ code: 'FILE_EXISTS', message: expect.stringContaining('taken') });
    expect(e.hint).toContain('another name');
    expect(existsSync(join(work, 'taken', 'package.json'))).toBe(false);
  });

  it.each([['My-App'], ['my app'], ['../escape'], ['@scope/app'], ['.hidden'], ['']])(
    'refuses %j as a name, saying which characters a name may use',
    async (name) => {
      const e = await refusal({ name, template: 'ts', parentDir: work });
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.hint).toContain('lowercase letters');
    },
  );

  it('refuses the name of the SDK itself, which the app depends on', async () => {
    const e = await refusal({ name: 'pollen', template: 'ts', parentDir: work });
    expect(e).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('SDK') });
  });

  it('refuses an unknown template and lists the ones there are', async () => {
    const e = await refusal({ name: 'x-app', template: 'tensorflow', parentDir: work });
    expect(e).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'No app template "tensorflow"' });
    expect(e.hint).toContain('ts (TypeScript');
    expect(e.hint).toContain('numpy (Python, NumPy');
    expect(e.hint).toContain('pytorch (Python, PyTorch');
    expect((await refusal({ name: 'x-app', template: 'toString', parentDir: work })).code).toBe(
      'INVALID_ARGUMENT',
    );
  });

  it('ships every template with the package (package.json "files")', () => {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_DIR, 'package.json'), 'utf8'));
    expect(pkg.files).toContain('templates');
    for (const [id, t] of Object.entries(APP_TEMPLATES))
      expect(
        existsSync(
          join(PACKAGE_DIR, 'templates', id, t.language === 'python' ? 'pyproject.toml' : 'package.json'),
        ),
      ).toBe(true);
  });
});

describe('createApp: the Python templates', () => {
  it.each([
    ['numpy', ['numpy>=1.24']],
    ['pytorch', ['torch>=1.12', 'numpy>=1.24']],
  ])(
    'writes the %s template as a pyproject.toml app whose package is named after the app',
    (template, deps) => {
      const app = createApp({ name: `my-${template}.app`, template, parentDir: work });
      const module = `my_${template}_app`;
      expect(app).toMatchObject({ language: 'python', template });
      expect(app.files).toEqual([
        'README.md',
        '.gitignore',
        'pyproject.toml',
        `${module}/__init__.py`,
        `${module}/client_app.py`,
        `${module}/server_app.py`,
        `${module}/task.py`,
      ]);
      const pyproject = readFileSync(join(app.dir, 'pyproject.toml'), 'utf8');
      expect(pyproject).toContain(`name = "my-${template}.app"`);
      expect(pyproject).toContain(`dependencies = ${JSON.stringify(deps).replaceAll(',', ', ')}`);
      expect(pyproject).toContain(`serverapp = "${module}.server_app:app"`);
      expect(pyproject).toContain(`clientapp = "${module}.client_app:app"`);
      expect(readFileSync(join(app.dir, module, 'client_app.py'), 'utf8')).toContain(
        `from ${module}.task import`,
      );
      expect(readFileSync(join(app.dir, 'README.md'), 'utf8')).toMatch(
        new RegExp(`^# my-${template}\\.app\n`),
      );
      for (const file of app.files) expect(readFileSync(join(app.dir, file), 'utf8')).not.toContain('{{');
    },
  );

  it.each([
    ['2fast', 'start with a digit'],
    ['import', 'be a Python keyword'],
    ['torch', 'hide the torch it imports'],
  ])('refuses %j as the name of a Python app: %s', async (name, why) => {
    const e = await refusal({ name, template: 'pytorch', parentDir: work });
    expect(e).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(why) });
    expect(e.hint).toContain('starts with a letter');
    expect(existsSync(join(work, name))).toBe(false);
  });

  it('lets a TypeScript app take a name no Python package could', () => {
    expect(createApp({ name: '2fast', template: 'ts', parentDir: work }).language).toBe('typescript');
  });
});
