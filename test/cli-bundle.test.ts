/**
 * The CLI bundled (dist/bundle/, scripts/bundle.mjs): bin/pollen.js runs it, and
 * from it every file of the package is found as from tsc's modules (package.json for the
 * version, templates/, sdk/python, the app runner in dist/apps/); the packages left out of the
 * bundle load when a command needs them, not at start; bin/pollen.js falls back to the modules
 * when the bundle is missing or older than them. Real processes of the built CLI.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, POLLEN_BIN, tempDir } from './support/cli.js';
import { TRACE_ARGS } from './support/module-trace.js';
import { PYTHON } from './support/python.js';

const ROOT = resolve(import.meta.dirname, '..');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
/** What scripts/bundle.mjs leaves out of the bundle. */
const EXTERNAL = ['better-sqlite3', 'esbuild', 'pg', 'thread-stream'];

const t = tempDir('pollen-bundle-');
beforeAll(() => ensureBuilt('bundle/pollen.js'));
afterAll(() => t.cleanup());

/** The package's own files among `own` that are not the bundle's. */
const notBundled = (own: string[]) => own.filter((f) => !f.startsWith('dist/bundle/'));

let runs = 0;
interface Traced {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The package's own ES modules it loaded, relative to the package. */
  own: string[];
  /** The externals it required. */
  externals: string[];
}

/** How to start `node bin/pollen.js ARGS` traced, and how to read its trace once it has ended. */
function tracing(args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv }) {
  const esmFile = join(t.dir, `esm-${++runs}.txt`);
  const cjsFile = join(t.dir, `cjs-${runs}.txt`);
  writeFileSync(esmFile, '');
  const argv = [...TRACE_ARGS, POLLEN_BIN, ...args];
  const options = {
    cwd: o.cwd ?? t.dir,
    env: {
      ...process.env,
      NO_COLOR: '1',
      POLLEN_CONFIG: join(t.dir, 'none.toml'),
      POLLEN_TRACE_ESM: esmFile,
      POLLEN_TRACE_CJS: cjsFile,
      ...o.env,
    },
  };
  const lines = (file: string) =>
    existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
  const result = (code: number | null, stdout: string, stderr: string): Traced => {
    const packages = new Set(
      lines(cjsFile).flatMap((f) => {
        const m = /node_modules\/((@[^/]+\/)?[^/]+)\//.exec(f);
        return m ? [m[1] as string] : [];
      }),
    );
    const own = lines(esmFile)
      .filter((u) => u.startsWith(`file://${ROOT}/`))
      .map((u) => u.slice(`file://${ROOT}/`.length));
    return { code, stdout, stderr, own, externals: EXTERNAL.filter((p) => packages.has(p)) };
  };
  return { argv, options, result };
}

/** `node bin/pollen.js ARGS` as a process to its end, with the files it loaded. */
function traced(args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Traced {
  const { argv, options, result } = tracing(args, o);
  const r = spawnSync(process.execPath, argv, { ...options, encoding: 'utf8', timeout: 120_000 });
  return result(r.status, r.stdout, r.stderr);
}

/** A service (`pollen superlink …`) until `ready` shows on stdout, then Ctrl-C (SIGINT); what it loaded. */
async function tracedService(args: string[], ready: string): Promise<Traced> {
  const { argv, options, result } = tracing(args, {});
  const child = spawn(process.execPath, argv, options);
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  await new Promise<void>((res, rej) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes(ready)) res();
    });
    void exited.then(() => rej(new Error(`exited before ready: ${stdout}${stderr}`)));
  });
  // The banner comes just before the command installs its signal handlers: a Ctrl-C that comes
  // first would kill the process before it writes its trace.
  await sleep(500);
  child.kill('SIGINT');
  return result(await exited, stdout, stderr);
}

describe('the bundled CLI', () => {
  it('is what bin/pollen.js runs: files of the bundle only, no external loaded at start', () => {
    const r = traced(['--version']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(VERSION);
    expect(notBundled(r.own)).toEqual(['bin/pollen.js']);
    expect(r.own).toContain('dist/bundle/pollen.js');
    expect(r.externals).toEqual([]);
  });

  it('loads an external when the command that needs it runs: the stores of a SuperLink', async () => {
    const port = () => `127.0.0.1:${20_000 + Math.floor(Math.random() * 20_000)}`;
    const r = await tracedService(
      ['superlink', '--insecure', '--state-dir', join(t.dir, 'superlink')]
        .concat(['--fleet-address', port(), '--control-address', port(), '--serverappio-address', port()])
        .concat(['--metrics-address', 'off']),
      'Ctrl-C to stop',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(notBundled(r.own)).toEqual(['bin/pollen.js']);
    // The store imports both drivers (as tsc's modules do); pino brings thread-stream.
    expect(r.externals).toEqual(['better-sqlite3', 'pg', 'thread-stream']);
  });

  it('makes an app from the templates, builds it with esbuild and simulates it with the app runner', () => {
    const made = traced(['new', 'bundled-app', '--json']);
    expect(made.code, made.stdout + made.stderr).toBe(0);
    // The template's package.json points at this Pollen (found from the package root).
    const pkg = JSON.parse(readFileSync(join(t.dir, 'bundled-app', 'package.json'), 'utf8'));
    expect(pkg.dependencies).toEqual({ pollen: `file:${ROOT}` });

    const sim = traced(['simulate', 'bundled-app', '--nodes', '2', '--run-config', 'num-rounds=1', '--json']);
    expect(sim.code, sim.stdout + sim.stderr).toBe(0);
    expect(JSON.parse(sim.stdout)).toMatchObject({ ok: true, rounds: [{ round: 1 }] });
    expect(notBundled(sim.own)).toEqual(['bin/pollen.js']);
    expect(sim.externals).toContain('esbuild');
  });

  it('runs a Python app with the SDK in sdk/python', () => {
    const made = traced(['new', 'bundled-py', '--template', 'numpy', '--json']);
    expect(made.code, made.stdout + made.stderr).toBe(0);
    const sim = traced(
      [
        'simulate',
        'bundled-py',
        '--nodes',
        '2',
        '--run-config',
        'num-server-rounds=1',
        '--python',
        PYTHON,
        '--json',
      ],
      { env: { POLLEN_PYTHON: PYTHON } },
    );
    expect(sim.code, sim.stdout + sim.stderr).toBe(0);
    expect(JSON.parse(sim.stdout)).toMatchObject({ ok: true, rounds: [{ round: 1 }] });
  });
});

describe('bin/pollen.js', () => {
  // A copy of bin/ beside a dist/ of two stand-ins that say which one ran.
  const fake = join(t.dir, 'fake-package');
  const stand = (name: string) => `export async function main() { console.log('${name}'); return 0; }\n`;
  beforeAll(() => {
    mkdirSync(join(fake, 'bin'), { recursive: true });
    mkdirSync(join(fake, 'dist', 'cli'), { recursive: true });
    copyFileSync(POLLEN_BIN, join(fake, 'bin', 'pollen.js'));
    writeFileSync(join(fake, 'dist', 'cli', 'main.js'), stand('modules'));
    mkdirSync(join(fake, 'dist', 'bundle'));
    writeFileSync(join(fake, 'dist', 'bundle', 'pollen.js'), stand('bundle'));
  });
  const which = (env: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [join(fake, 'bin', 'pollen.js')], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    }).stdout.trim();
  const age = (file: string, seconds: number) => {
    const when = new Date(Date.now() - seconds * 1000);
    utimesSync(join(fake, 'dist', file), when, when);
  };

  it('runs the bundle when it is at least as new as the modules', () => {
    age('cli/main.js', 60);
    age('bundle/pollen.js', 10);
    expect(which()).toBe('bundle');
  });

  it('runs the modules when the bundle is older (tsc ran without the bundle step) or POLLEN_NO_BUNDLE=1', () => {
    age('cli/main.js', 10);
    age('bundle/pollen.js', 60);
    expect(which()).toBe('modules');
    age('bundle/pollen.js', 0);
    expect(which({ POLLEN_NO_BUNDLE: '1' })).toBe('modules');
  });
});
