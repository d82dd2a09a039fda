/**
 * Pollen installed as a product, outside the clone, as the README says: `npm pack`, then
 * `npm install -g` of the tarball into a temporary prefix, offline (from the npm cache: it needs
 * the dependencies and their registry metadata there), and a user's own app in a folder of its
 * own that gets `pollen/sdk` and `pollen/strategies` from the installed Pollen. Slow
 * (better-sqlite3 compiles on install): a few minutes on 2 cores.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../src/errors.js';
import { cliEnv } from './support/federation.js';

const ROOT = resolve(import.meta.dirname, '..');
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
let tmp: string;
let prefix: string;
let installed: string;

/** npm without the network: only what the npm cache holds; native code built here. */
const npmEnv = () => cliEnv({ npm_config_offline: 'true', npm_config_build_from_source: 'true' });

/** Asynchronous, so the test worker keeps answering vitest during the minutes npm takes. */
async function npm(args: string[], cwd: string): Promise<void> {
  await promisify(execFile)('npm', [...args, '--no-audit', '--no-fund'], { cwd, env: npmEnv() });
}

/** The installed `pollen` command, from a folder outside the clone. */
function pollen(args: string[], cwd = tmp) {
  const r = spawnSync(join(prefix, 'bin', 'pollen'), args, { cwd, env: cliEnv(), encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pollen-install-'));
  prefix = join(tmp, 'prefix');
  await npm(['pack', '--pack-destination', tmp], ROOT);
  const tarball = readdirSync(tmp).find((f) => /^pollen-.*\.tgz$/.test(f));
  if (!tarball) throw new Error(`npm pack wrote no pollen-*.tgz into ${tmp}`);
  await npm(['install', '-g', '--prefix', prefix, join(tmp, tarball)], tmp);
  installed = join(prefix, 'lib', 'node_modules', 'pollen');
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('an installed Pollen (npm pack, npm install -g, offline)', () => {
  it('holds the build, the templates and the manuals, not the sources or the tests', () => {
    const files = readdirSync(installed);
    for (const f of ['bin', 'dist', 'docs', 'templates', 'package.json', 'README.md'])
      expect(files).toContain(f);
    for (const f of ['src', 'test', 'examples', 'scripts']) expect(files).not.toContain(f);
  });

  it('has a working pollen command: --version, demo --help', () => {
    const v = pollen(['--version']);
    expect(v.code, v.stderr).toBe(ExitCode.OK);
    expect(v.stdout.trim()).toBe(VERSION);
    const help = pollen(['demo', '--help']);
    expect(help.code, help.stderr).toBe(ExitCode.OK);
    expect(help.stdout).toContain('run a whole secure federation on this machine');
    // The stores of the services need SQLite's native module, compiled while npm installed it.
    const sqlite = spawnSync(
      process.execPath,
      ['-e', "console.log(new (require('better-sqlite3'))(':memory:').prepare('select 6*7 as n').get().n)"],
      { cwd: installed, encoding: 'utf8' },
    );
    expect(sqlite.stdout.trim(), sqlite.stderr).toBe('42');
  });

  it('says the MNIST demo needs a clone, with a code and a hint, and runs nothing', () => {
    const r = pollen(['demo', '--json']);
    expect(r.code).toBe(ExitCode.NOT_FOUND);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      error: { code: 'FILE_NOT_FOUND', hint: expect.stringContaining('npm run demo') },
    });
  });

  it('makes a new app from its template that depends on the installed Pollen, and simulates it', () => {
    const made = pollen(['new', 'made-app', '--json']);
    expect(made.code, made.stdout + made.stderr).toBe(ExitCode.OK);
    const manifest = JSON.parse(readFileSync(join(tmp, 'made-app', 'package.json'), 'utf8'));
    expect(manifest.dependencies.pollen).toBe(`file:${installed}`);
    const sim = pollen(['simulate', 'made-app', '--nodes', '2', '--rounds', '1', '--json']);
    expect(sim.code, sim.stderr).toBe(ExitCode.OK);
    expect(JSON.parse(sim.stdout)).toMatchObject({ ok: true });
  });

  it("gives a user's own app pollen/sdk and pollen/strategies, with types, and bundles it", async () => {
    const app = join(tmp, 'my-app');
    mkdirSync(join(app, 'src'), { recursive: true });
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({
        name: 'my-app',
        version: '1.0.0',
        type: 'module',
        pollen: { serverapp: 'src/server.ts', clientapp: 'src/client.ts', config: { 'num-rounds': 1 } },
      }),
    );
    writeFileSync(
      join(app, 'src', 'client.ts'),
      `import { ClientApp, MetricRecord, RecordDict } from 'pollen/sdk';
export default new ClientApp({
  train: () => new RecordDict({ metrics: new MetricRecord({ 'num-examples': 1 }) }),
});
`,
    );
    writeFileSync(
      join(app, 'src', 'server.ts'),
      `import { ServerApp } from 'pollen/sdk';
import { FedAvg } from 'pollen/strategies';
export default new ServerApp(async () => void new FedAvg());
`,
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true },
        include: ['src'],
      }),
    );
    // As the README says: the app's dependency is the installed Pollen, never the registry's `pollen`.
    await npm(['install', installed], app);
    expect(JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')).dependencies.pollen).toMatch(/^file:/);

    const imported = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "const s = await import('pollen/sdk'); const t = await import('pollen/strategies'); console.log(typeof s.ClientApp, typeof t.FedAvg)",
      ],
      { cwd: app, encoding: 'utf8' },
    );
    expect(imported.stdout.trim(), imported.stderr).toBe('function function');

    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', app], {
      encoding: 'utf8',
    });
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);

    const built = pollen(['build', app, '--json'], app);
    expect(built.code, built.stderr).toBe(ExitCode.OK);
    expect(JSON.parse(built.stdout)).toMatchObject({ ok: true, hash: expect.stringMatching(/^sha256:/) });
  });
});
