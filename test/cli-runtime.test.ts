import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, POLLEN_BIN, pollen, pollenAsync, pollenInProcess, tempDir } from './support/cli.js';

// The runtime commands as an operator runs them, as real processes: a SuperLink and two
// SuperNodes over mutual TLS from `pollen cert` certificates, then an admin drives runs through
// a named federation. Needs the build (npm run build).

const ROOT = resolve(import.meta.dirname, '..');
const TINY = join(ROOT, 'test/fixtures/apps/tiny');
const t = tempDir('pollen-rt-');
const CA = join(t.dir, 'ca');
const certs = (name: string) => ({
  cert: join(t.dir, 'certs', name, `${name}.crt`),
  key: join(t.dir, 'certs', name, `${name}.key`),
  root: join(t.dir, 'certs', name, 'rootCA.pem'),
});
const ENV = {
  POLLEN_CONFIG: join(t.dir, 'config', 'pollen.toml'),
  NO_COLOR: '1',
};

interface ErrorDoc {
  ok: false;
  error: { code: string; message: string; hint: string };
}

/** stdout of a --json run: exactly one JSON document (JSON.parse refuses anything more). */
function doc<T = Record<string, unknown>>(r: Pick<CliResult, 'stdout' | 'stderr'>): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout is not exactly one JSON document:\n${r.stdout}\n--- stderr:\n${r.stderr}`);
  }
}

function expectError(
  r: Pick<CliResult, 'stdout' | 'stderr' | 'code'>,
  code: string,
  exit: number,
): ErrorDoc['error'] {
  const d = doc<ErrorDoc>(r);
  expect(d.ok, r.stdout).toBe(false);
  expect(d.error.code, r.stdout).toBe(code);
  expect(r.code, r.stdout + r.stderr).toBe(exit);
  return d.error;
}

// Admin commands in-process through main() (the services run as real processes below).
const cli = (args: string[]) => pollenInProcess(args, { cwd: t.dir, env: ENV });

// --- long-running processes -------------------------------------------------------------------

interface Daemon {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<number | null>;
  exitCode?: number | null;
}
const daemons: Daemon[] = [];

function startDaemon(args: string[]): Daemon {
  const child = spawn(process.execPath, [POLLEN_BIN, ...args], {
    cwd: t.dir,
    env: { ...process.env, ...ENV },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const d: Daemon = { child, stdout: '', stderr: '', exit: Promise.resolve(null) };
  // Keep draining both pipes: a full pipe would block the child's synchronous log writes.
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (d.stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    d.stderr = (d.stderr + s).slice(-200_000);
  });
  d.exit = new Promise((res) =>
    child.once('exit', (code) => {
      d.exitCode = code;
      res(code);
    }),
  );
  daemons.push(d);
  return d;
}

function killAll(signal: NodeJS.Signals): void {
  for (const d of daemons) if (d.exitCode === undefined && d.child.pid) d.child.kill(signal);
}
process.once('exit', () => killAll('SIGKILL'));

async function waitFor<T>(
  d: Daemon,
  what: string,
  probe: () => T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (d.exitCode !== undefined || Date.now() > end)
      throw new Error(
        `${what}: ${d.exitCode !== undefined ? `process exited (${d.exitCode})` : 'timed out'}\n` +
          `stdout: ${d.stdout}\nstderr: ${d.stderr.slice(-4000)}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

function tryDoc<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

async function stopDaemon(d: Daemon, timeoutMs = 20_000): Promise<number | null> {
  if (d.exitCode !== undefined) return d.exitCode;
  d.child.kill('SIGTERM');
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeoutMs).unref());
  const code = await Promise.race([d.exit, timer]);
  if (code === 'timeout') {
    d.child.kill('SIGKILL');
    throw new Error(`process ${d.child.pid} did not stop on SIGTERM\n${d.stderr.slice(-4000)}`);
  }
  return code;
}

// --- the federation ---------------------------------------------------------------------------

interface SuperLinkDoc {
  ok: true;
  fleet: string;
  control: string;
  serverAppIo: string;
  nodeAuth: boolean;
  secure: boolean;
}
interface SuperNodeDoc {
  ok: true;
  nodeId: string;
  name: string;
  superlink: string;
}
interface RunDoc {
  runId: string;
  status: string;
  subStatus: string | null;
  federation: string;
  createdBy: string;
  app: { name: string; version: string } | null;
}
interface RoundDoc {
  round: number;
  metrics: Record<string, number>;
  nodes: string[];
}

let superlink: Daemon;
let nodes: Daemon[] = [];
let links: SuperLinkDoc;
let nodeDocs: SuperNodeDoc[] = [];
let runId = '';

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/cli/commands/superlink.js'))) throw new Error('run npm run build first');
  const init = await cli(['cert', 'init', '-n', 'rt-project', '-o', CA, '--key-type', 'ec-p256', '--json']);
  expect(init.code, init.stderr).toBe(0);
  expect(doc(init)).toMatchObject({ ok: true, name: 'rt-project' });
  const site = (name: string, type: string, extra: string[] = []) =>
    cli([
      'cert',
      'site',
      '-n',
      name,
      '-t',
      type,
      '-c',
      CA,
      '-o',
      join(t.dir, 'certs', name),
      '--json',
      ...extra,
    ]);
  const issued = await Promise.all([
    site('superlink', 'server', ['--host', '127.0.0.1', '--host', 'localhost']),
    site('site-0', 'client'),
    site('site-1', 'client'),
    site('admin', 'admin', ['--role', 'project_admin']),
  ]);
  for (const r of issued) {
    expect(r.code, r.stderr).toBe(0);
    expect(doc<{ ok: boolean; certificate: string }>(r)).toMatchObject({ ok: true });
  }
  const sl = certs('superlink');
  superlink = startDaemon([
    'superlink',
    '--cert',
    sl.cert,
    '--key',
    sl.key,
    '--root-ca',
    sl.root,
    '--fleet-address',
    '127.0.0.1:0',
    '--control-address',
    '127.0.0.1:0',
    '--serverappio-address',
    '127.0.0.1:0',
    '--state-dir',
    join(t.dir, 'superlink'),
    '--log-level',
    'warn',
    '--json',
  ]);
  links = await waitFor(superlink, 'SuperLink start', () => tryDoc<SuperLinkDoc>(superlink.stdout));
  const fleetPort = new URL(links.fleet).port;
  nodes = [0, 1].map((i) => {
    const c = certs(`site-${i}`);
    return startDaemon([
      'supernode',
      '--cert',
      c.cert,
      '--key',
      c.key,
      '--root-ca',
      c.root,
      '--superlink',
      `127.0.0.1:${fleetPort}`,
      '--node-config',
      `partition-id=${i}`,
      '--work-dir',
      join(t.dir, `node-${i}`),
      '--log-level',
      'warn',
      '--json',
    ]);
  });
  nodeDocs = await Promise.all(
    nodes.map((n, i) => waitFor(n, `SuperNode ${i} start`, () => tryDoc<SuperNodeDoc>(n.stdout))),
  );
}, 60_000);

afterAll(async () => {
  killAll('SIGTERM');
  const grace = new Promise((r) => setTimeout(r, 5_000).unref());
  await Promise.race([Promise.all(daemons.map((d) => d.exit)), grace]);
  killAll('SIGKILL');
  t.cleanup();
});

describe('pollen superlink and pollen supernode', () => {
  it('print one JSON document with their addresses and node ids', () => {
    expect(links).toMatchObject({ ok: true, secure: true, nodeAuth: false });
    expect(links.fleet).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(links.control).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(links.serverAppIo).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    for (const [i, d] of nodeDocs.entries()) {
      expect(d.nodeId).toMatch(/^[0-9a-f]{16}$/);
      // without --name a node is known by its certificate name
      expect(d.name).toBe(`site-${i}`);
    }
    expect(nodeDocs[0]!.nodeId).not.toBe(nodeDocs[1]!.nodeId);
  });

  it('a second SuperLink on the same store refuses to start: STORE_LEASE_HELD names the holder', async () => {
    const sl = certs('superlink');
    const second = startDaemon([
      ...['superlink', '--cert', sl.cert, '--key', sl.key, '--root-ca', sl.root],
      ...['--fleet-address', '127.0.0.1:0', '--control-address', '127.0.0.1:0'],
      ...['--serverappio-address', '127.0.0.1:0', '--state-dir', join(t.dir, 'superlink'), '--json'],
    ]);
    const code = await second.exit;
    const error = expectError(
      { stdout: second.stdout, stderr: second.stderr, code: code ?? -1 },
      'STORE_LEASE_HELD',
      6,
    );
    expect(error.message).toMatch(/^Another SuperLink \(.+:\d+:[0-9a-f]{8}\) holds the store at /);
    expect(error.hint).toMatch(/One SuperLink per database/);
  });
});

describe('pollen config superlink', () => {
  /** `pollen config superlink add NAME` at the Control API with certificate `cert`, and `more` flags. */
  const addSuperLink = (name: string, cert: string, ...more: string[]) => {
    const c = certs(cert);
    const credentials = ['--certificate', c.cert, '--private-key', c.key, '--root-certificate', c.root];
    return cli([
      'config',
      'superlink',
      'add',
      name,
      '--address',
      new URL(links.control).host,
      ...credentials,
      ...more,
    ]);
  };

  it('adds a SuperLink with admin credentials and lists it; the earlier spelling works and says it moved', async () => {
    const add = await addSuperLink('test', 'admin', '--default', '--json');
    expect(add.code, add.stderr).toBe(0);
    expect(doc(add)).toEqual({ ok: true, name: 'test', federation: 'default', path: ENV.POLLEN_CONFIG });

    // a client certificate cannot act as an admin: a second connection proves the refusal
    const c = certs('site-0');
    const intruder = await cli([
      ...['federation', 'add', 'as-node', '--address', new URL(links.control).host],
      ...['--certificate', c.cert, '--private-key', c.key, '--root-certificate', c.root, '--json'],
    ]);
    expect(intruder.code, intruder.stderr).toBe(0);
    expect(doc(intruder)).toMatchObject({ ok: true, name: 'as-node' });
    expect(intruder.stderr).toContain('moved to `pollen config superlink add`');

    const list = await cli(['config', 'superlink', 'list', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const address = new URL(links.control).host;
    expect(doc(list)).toEqual({
      ok: true,
      path: ENV.POLLEN_CONFIG,
      superlinks: [
        { name: 'test', address, federation: 'default', default: true, insecure: false },
        { name: 'as-node', address, federation: 'default', default: false, insecure: false },
      ],
    });

    const incomplete = await cli(['config', 'superlink', 'add', 'x', '--address', '127.0.0.1:1', '--json']);
    expect(expectError(incomplete, 'USAGE', 2).message).toContain('--kit');
    const noKit = await cli([
      'config',
      'superlink',
      'add',
      'x',
      '--address',
      '127.0.0.1:1',
      '--kit',
      'nowhere',
      '--json',
    ]);
    expect(expectError(noKit, 'FILE_NOT_FOUND', 4).message).toBe('--kit nowhere: no such file or folder');
    const listed = await cli(['config', 'superlink', 'list', '--json']);
    expect(doc<{ superlinks: { name: string }[] }>(listed).superlinks.map((f) => f.name)).not.toContain('x');
  });

  it('refuses a client certificate on the Control API', async () => {
    const r = await cli(['list', 'as-node', '--json']);
    const e = expectError(r, 'PERMISSION_DENIED', 5);
    expect(e.message).toContain('client certificate');
  });

  it('lists both SuperNodes online under their certificate names', async () => {
    const r = await cli(['supernode', 'list', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const d = doc<{
      superlink: string;
      federation: string;
      nodes: { nodeId: string; name: string; status: string }[];
    }>(r);
    expect([d.superlink, d.federation]).toEqual(['test', 'default']);
    const byId = new Map(d.nodes.map((n) => [n.nodeId, n]));
    for (const [i, n] of nodeDocs.entries())
      expect(byId.get(n.nodeId)).toMatchObject({ name: `site-${i}`, status: 'online' });
  });
});

describe('runs: pollen run, list, log, stop', () => {
  it('runs the tiny app to completion with --stream', async () => {
    const r = await cli(['run', TINY, '--stream', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const d = doc<{ ok: boolean; run: RunDoc; rounds: RoundDoc[]; artefacts: { name: string }[] }>(r);
    expect(d.run).toMatchObject({
      status: 'finished',
      subStatus: 'completed',
      // The SuperLink's federation, not the name of the local connection entry.
      federation: 'default',
      createdBy: 'admin',
      app: { name: 'pollen-test-tiny', version: '1.0.0' },
    });
    runId = d.run.runId;
    expect(runId).toMatch(/^[0-9a-f]{16}$/);
    expect(d.rounds.map((x) => x.round)).toEqual([1, 2]);
    // partition ids 0 and 1 add 1 and 2 with 10 and 20 examples: FedAvg moves w by 5/3 a round
    for (const round of d.rounds) {
      expect(Object.keys(round.metrics).sort()).toEqual(['train-loss', 'w0']);
      expect(round.metrics['w0']).toBeCloseTo((5 / 3) * round.round, 4);
      expect(round.metrics['train-loss']).toBeCloseTo(2 / 3, 6);
      expect([...round.nodes].sort()).toEqual(nodeDocs.map((n) => n.nodeId).sort());
    }
    // What the ServerApp saved, ready for `pollen pull`.
    expect(d.artefacts.map((a) => a.name)).toEqual(['final_model.npz', 'metrics/w0.json']);
  });

  it('prints exactly one JSON document when a followed run fails: run --stream and log --stream', async () => {
    // Five nodes needed, two online: the ServerApp fails its first round.
    const r = await cli(['run', TINY, '--stream', '--json', '--run-config', 'min-nodes=5']);
    const d = doc<{ ok: boolean; run: RunDoc; rounds: RoundDoc[]; error: ErrorDoc['error'] }>(r);
    expect(d.ok).toBe(false);
    expect(d.run).toMatchObject({ status: 'finished', subStatus: 'failed' });
    expect(d.error.code).toBe('RUN_FAILED');
    expect(d.error.message).toContain('2 nodes online, 5 needed');
    expect(r.code).toBe(1);
    const failed = d.run.runId;

    const log = await cli(['log', failed, '--stream', '--json']);
    const l = doc<{
      ok: boolean;
      runId: string;
      lines: { text: string }[];
      run: RunDoc;
      error: ErrorDoc['error'];
    }>(log);
    expect(l).toMatchObject({
      ok: false,
      runId: failed,
      run: { subStatus: 'failed' },
      error: { code: 'RUN_FAILED' },
    });
    expect(l.lines.map((x) => x.text).join('\n')).toContain('5 needed');
    expect(log.code).toBe(1);

    const text = await cli(['log', failed, '--stream']);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('5 needed');
    expect(text.stderr).toContain('error[RUN_FAILED]');
  });

  it('lists the run, and shows it with its rounds', async () => {
    expect(runId).not.toBe('');
    const list = await cli(['list', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const runs = doc<{ superlink: string; federation: string; runs: RunDoc[] }>(list);
    expect([runs.superlink, runs.federation]).toEqual(['test', 'default']);
    expect(runs.runs.find((r) => r.runId === runId)).toMatchObject({
      status: 'finished',
      subStatus: 'completed',
    });

    const one = await cli(['list', '--run-id', runId]);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toContain(`run ${runId}  finished:completed`);
    expect(one.stdout).toMatch(/round +1 +train-loss 0\.6667 +w0 1\.6667 +2 nodes/);
    expect(one.stdout).toMatch(/round +2 +train-loss 0\.6667 +w0 3\.3333 +2 nodes/);

    const oneJson = await cli(['ls', '--run-id', runId, '--json']);
    expect(doc<{ run: RunDoc; rounds: RoundDoc[] }>(oneJson).rounds).toHaveLength(2);
  });

  it("prints the run's log", async () => {
    const r = await cli(['log', runId, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const d = doc<{ runId: string; lines: { seq: number; stream: string; text: string }[]; run: RunDoc }>(r);
    expect(d.runId).toBe(runId);
    expect(d.run.subStatus).toBe('completed');
    const texts = d.lines.map((l) => l.text);
    expect(texts).toContain('round 1: w[0] = 1.6666666269302368');
    expect(texts).toContain('round 2: w[0] = 3.3333330154418945');
    expect(d.lines.map((l) => l.seq)).toEqual([...d.lines.map((l) => l.seq)].sort((a, b) => a - b));

    const text = await cli(['log', runId]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('round 2: w[0] = 3.3333330154418945');
  });

  it('refuses to stop a finished run', async () => {
    const r = await cli(['stop', runId, '--json']);
    const e = expectError(r, 'RUN_STATE_CONFLICT', 6);
    expect(e.message).toContain(runId);
    expect(e.message).toContain('completed');
  });

  it('reports an unknown run as RUN_NOT_FOUND', async () => {
    const r = await cli(['log', '0123456789abcdef', '--json']);
    expect(expectError(r, 'RUN_NOT_FOUND', 4).hint).toContain('pollen ls');
    const stop = await cli(['stop', '0123456789abcdef', '--json']);
    expectError(stop, 'RUN_NOT_FOUND', 4);
    const text = await cli(['log', '0123456789abcdef']);
    expect(text.code).toBe(4);
    expect(text.stdout).toBe('');
    expect(text.stderr).toContain('error[RUN_NOT_FOUND]');
  });

  it('reports a missing federation or SuperLink with a hint, before building anything', async () => {
    const r = await cli(['run', TINY, 'nope', '--json']);
    const e = expectError(r, 'FEDERATION_NOT_FOUND', 4);
    expect(e.message).toContain('"nope"');
    expect(e.message).toContain('SuperLink "test"');
    expect(e.hint).toContain('pollen config superlink list');
    expect(r.stderr).not.toContain('building');

    // no config file at all
    const none = await pollenAsync(['run', TINY, '--json'], {
      cwd: t.dir,
      env: { ...ENV, POLLEN_CONFIG: join(t.dir, 'missing.toml') },
    });
    expect(expectError(none, 'SUPERLINK_NOT_FOUND', 4).hint).toContain('pollen config superlink add');
  });
});

describe('usage', () => {
  it('documents every runtime command with examples', async () => {
    const commands = [
      ['superlink'],
      ['supernode'],
      ['run'],
      ['list'],
      ['log'],
      ['stop'],
      ['config', 'superlink'],
      ['config', 'superlink', 'add'],
      ['config', 'superlink', 'list'],
      ['config', 'superlink', 'use'],
      ['federation'],
    ];
    const helps = await Promise.all(commands.map((c) => cli([...c, '--help'])));
    for (const [i, h] of helps.entries()) {
      expect(h.code, commands[i]!.join(' ')).toBe(0);
      expect(h.stdout, commands[i]!.join(' ')).toContain('Examples:');
    }
  });

  it('refuses a SuperLink without TLS material, naming --kit and --insecure', async () => {
    const r = await cli(['superlink', '--state-dir', join(t.dir, 'never'), '--json']);
    const e = expectError(r, 'USAGE', 2);
    expect(`${e.message} ${e.hint}`).toContain('--kit');
    expect(`${e.message} ${e.hint}`).toContain('--insecure');
    const text = pollen(['superlink', '--state-dir', join(t.dir, 'never')], { cwd: t.dir, env: ENV });
    expect(text.code).toBe(2);
    expect(text.stderr).toContain('error[USAGE]');
    expect(text.stderr).toContain('--insecure');
  });

  it('warns loudly about an insecure SuperNode', async () => {
    const d = startDaemon([
      'supernode',
      '--insecure',
      '--superlink',
      '127.0.0.1:1',
      '--work-dir',
      join(t.dir, 'insecure-node'),
      '--log-level',
      'error',
    ]);
    await waitFor(d, 'insecure warning and first retry', () =>
      d.stderr.includes('SuperLink unreachable') ? true : undefined,
    );
    expect(d.stderr).toContain('INSECURE');
    expect(d.stdout).toBe('');
    expect(await stopDaemon(d)).toBe(0);
  });
});

describe('shutdown', () => {
  it('stops SuperNodes and the SuperLink on SIGTERM, leaving one JSON document on stdout', async () => {
    expect(await Promise.all(nodes.map((n) => stopDaemon(n)))).toEqual([0, 0]);
    expect(await stopDaemon(superlink)).toBe(0);
    for (const d of [superlink, ...nodes]) expect(doc(d)).toMatchObject({ ok: true });
  });
});
