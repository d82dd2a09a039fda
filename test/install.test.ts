/**
 * Pollen installed as a product, outside the clone, as the README says: `npm pack`, then
 * `npm install -g` of the tarball into a temporary prefix, and a user's own app in a folder of its
 * own that gets `pollen/sdk` and `pollen/strategies` from the installed Pollen. npm installs from
 * a registry on 127.0.0.1 that serves what package-lock.json holds, from the npm cache `npm ci`
 * filled, into an empty cache of its own: nothing comes from anywhere else.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../src/errors.js';
import { ensureBuilt } from './support/cli.js';
import { cliEnv } from './support/federation.js';
import { type LocalRegistry, startLocalRegistry } from './support/local-registry.js';
import { expectedPageAdvice } from './support/pages.js';

const ROOT = resolve(import.meta.dirname, '..');
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
let tmp: string;
let prefix: string;
let installed: string;
let registry: LocalRegistry;

/**
 * better-sqlite3's install script first downloads a prebuilt binary for this Node and platform
 * (from GitHub for a user), and compiles SQLite only when there is none. The test keeps that
 * script and serves it the binary this clone's `npm ci` left in node_modules, through the
 * download mirror better-sqlite3 honours: the install runs as a user's does, without minutes of
 * compiling. The binary is only served for the same better-sqlite3 version and Node ABI.
 */
function sqlitePrebuild(dir: string): { path: string; tarball: Buffer } {
  const pkg = join(ROOT, 'node_modules', 'better-sqlite3');
  const { version } = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { version: string };
  // Loads only when built for this Node: proof the binary fits the ABI named below.
  const Database = createRequire(import.meta.url)('better-sqlite3');
  new Database(':memory:').close();
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  const file = join(dir, name);
  const tar = spawnSync('tar', ['-czf', file, '-C', pkg, 'build/Release/better_sqlite3.node'], {
    encoding: 'utf8',
  });
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
  return { path: `/prebuilds/v${version}/${name}`, tarball: readFileSync(file) };
}

/** npm with the local registry, an empty cache and nothing else. */
const npmEnv = () =>
  cliEnv({
    npm_config_registry: registry.url,
    npm_config_cache: join(tmp, 'npm-cache'),
    npm_config_better_sqlite3_binary_host: `${registry.url}prebuilds`,
    npm_config_update_notifier: 'false',
  });

/** Asynchronous, so the test worker keeps answering vitest while npm works. */
async function npm(args: string[], cwd: string): Promise<void> {
  try {
    await promisify(execFile)('npm', [...args, '--no-audit', '--no-fund'], { cwd, env: npmEnv() });
  } catch (e) {
    // The registry's reason (e.g. a tarball missing from the npm cache) says more than npm's 404.
    if (registry.failures.length) throw new Error(registry.failures.join('\n'));
    throw e;
  }
}

/** `code` run as an ES module by this Node, in `cwd`. */
function esm(code: string, cwd: string) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd, encoding: 'utf8' });
}

/** The installed `pollen` command, from a folder outside the clone. */
function pollen(args: string[], cwd = tmp) {
  const r = spawnSync(join(prefix, 'bin', 'pollen'), args, { cwd, env: cliEnv(), encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pollen-install-'));
  prefix = join(tmp, 'prefix');
  const prebuild = sqlitePrebuild(tmp);
  registry = await startLocalRegistry({ files: { [prebuild.path]: prebuild.tarball } });
  // The tarball holds the dist/ that `npm test` built; pack's prepare script would build it again
  // (a whole compile) under the other tests that run the CLI from it.
  ensureBuilt('cli/main.js');
  await npm(['pack', '--ignore-scripts', '--pack-destination', tmp], ROOT);
  const tarball = readdirSync(tmp).find((f) => /^pollen-.*\.tgz$/.test(f));
  if (!tarball) throw new Error(`npm pack wrote no pollen-*.tgz into ${tmp}`);
  await npm(['install', '-g', '--prefix', prefix, join(tmp, tarball)], tmp);
  installed = join(prefix, 'lib', 'node_modules', 'pollen');
}, 300_000);
afterAll(async () => {
  await registry?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('an installed Pollen (npm pack, npm install -g, from a registry on 127.0.0.1)', () => {
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
    // The stores of the services need SQLite's native module, which its install script fetched.
    const sqlite = spawnSync(
      process.execPath,
      ['-e', "console.log(new (require('better-sqlite3'))(':memory:').prepare('select 6*7 as n').get().n)"],
      { cwd: installed, encoding: 'utf8' },
    );
    expect(sqlite.stdout.trim(), sqlite.stderr).toBe('42');
    // The aggregation kernel's memory asks for 2 MiB pages through koffi, whose prebuilt binary
    // came as an optional dependency for this platform.
    const pages = esm(
      "const { KernelMemory } = await import('./dist/strategies/kernel-memory.js'); const m = new KernelMemory(1 << 26); m.allocFloat32(1 << 20); console.log(m.pages)",
      installed,
    );
    expect(pages.stdout.trim(), pages.stderr).toBe(expectedPageAdvice());
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

    const imported = esm(
      "const s = await import('pollen/sdk'); const t = await import('pollen/strategies'); console.log(typeof s.ClientApp, typeof t.FedAvg)",
      app,
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

  it('got every package and the SQLite binary from the local registry, which could serve each request', () => {
    expect(registry.failures).toEqual([]);
    // npm asks for optional peers (pg's pg-native) that neither the lock nor the install holds.
    for (const r of registry.requests.filter((r) => r.status !== 200))
      expect(registry.optionalPeers, r.url).toContain(decodeURIComponent(r.url.slice(1)));
    const urls = registry.requests.map((r) => r.url);
    const deps = Object.keys(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).dependencies);
    for (const dep of deps) expect(urls).toContain(`/${dep.replace('/', '%2f')}`);
    expect(urls).toContainEqual(expect.stringMatching(/^\/prebuilds\/.*better-sqlite3-.*\.tar\.gz$/));
    // The registry's unrelated package `pollen` is never asked for.
    expect(urls).not.toContain('/pollen');
  });
});
