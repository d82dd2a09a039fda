/**
 * A real federation for integration tests: a project CA with server, client and admin
 * certificates in a temp folder, `pollen superlink` and `pollen supernode` as child processes of
 * the built CLI (each in its own process group, so its ServerApp / ClientApp children go with it),
 * a POLLEN_CONFIG file naming the federation "test" for the admin, and a `pollen(args)` runner.
 *
 * Run `npm run build` first: the CLI and the app runner come from dist/.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect } from 'vitest';
import { initCa, type LoadedCa, loadCa } from '../../src/pki/ca.js';
import type { CertType } from '../../src/pki/profiles.js';
import { createSiteCertificate } from '../../src/pki/site.js';
import { openChannel, type RpcChannel } from '../../src/transport/rpc-client.js';
import { loadTlsMaterial, type TlsMaterial } from '../../src/transport/tls.js';
import { pollenInProcess } from './cli.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin', 'pollen.js');
export const TINY_APP = join(ROOT, 'test', 'fixtures', 'apps', 'tiny');
export const FEDERATION = 'test';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Environment for the CLI: no POLLEN_* leaking in from the caller, no colours, no ops listener
 * (parallel tests would compete for ports 9095-9097; a test that wants one passes the flag).
 */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('POLLEN_')) delete env[k];
  return { ...env, NO_COLOR: '1', POLLEN_METRICS_ADDRESS: 'off', ...extra };
}

// ---------------------------------------------------------------------------------------------
// Certificates

export interface CertFiles {
  name: string;
  type: CertType;
  cert: string;
  key: string;
  ca: string;
  /** Hex serial as the CA recorded it. */
  serial: string;
}

export function tlsOf(c: CertFiles): TlsMaterial {
  return loadTlsMaterial({ cert: c.cert, key: c.key, ca: c.ca });
}

export interface Pki {
  dir: string;
  caDir: string;
  ca: LoadedCa;
  server: CertFiles;
  admin: CertFiles;
  /** Issue (or return the already issued) certificate NAME of TYPE. */
  cert(name: string, type?: CertType): Promise<CertFiles>;
}

export async function makePki(dir: string, project = 'fedtest'): Promise<Pki> {
  const caDir = join(dir, 'ca');
  await initCa({ name: project, dir: caDir, keyType: 'ec-p256' });
  const ca = await loadCa(caDir);
  const cache = new Map<string, CertFiles>();
  const cert = async (name: string, type: CertType = 'client'): Promise<CertFiles> => {
    const key = `${type}/${name}`;
    const known = cache.get(key);
    if (known) return known;
    const r = await createSiteCertificate(ca, {
      name,
      type,
      outDir: join(dir, 'certs', type, name),
      validityDays: 2,
      hosts: type === 'server' ? ['127.0.0.1', 'localhost'] : undefined,
      role: type === 'admin' ? 'project_admin' : undefined,
    });
    const files = { name, type, cert: r.certPath, key: r.keyPath, ca: r.rootPath, serial: r.serial };
    cache.set(key, files);
    return files;
  };
  const pki: Pki = {
    dir,
    caDir,
    ca,
    server: await cert('superlink', 'server'),
    admin: await cert('admin@test', 'admin'),
    cert,
  };
  return pki;
}

/** `ssh-keygen -t ecdsa -b BITS -N '' -f FILE`: a real OpenSSH node key; returns the private key path. */
export function sshKeygen(file: string, bits: 256 | 384 = 384, comment = 'node'): string {
  const r = spawnSync(
    'ssh-keygen',
    ['-q', '-t', 'ecdsa', '-b', String(bits), '-N', '', '-C', comment, '-f', file],
    {
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
  return file;
}

// ---------------------------------------------------------------------------------------------
// Processes

export interface Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or signal) once the process ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** Signal the whole process group (the process and its app children). */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<Proc>();

function launch(args: string[], env: NodeJS.ProcessEnv = cliEnv()): Proc {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => {
    err += d;
    // Keep only the tail of long logs.
    if (err.length > 2_000_000) err = err.slice(-1_000_000);
  });
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('exit', (code, signal) => {
      done = true;
      res({ code, signal });
    }),
  );
  const pid = child.pid!;
  const killGroup = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  };
  const proc: Proc = {
    child,
    pid,
    stdout: () => out,
    stderr: () => err,
    exited,
    alive: () => !done,
    kill(signal = 'SIGKILL') {
      if (signal === 'SIGKILL') killGroup(signal);
      else if (!done) child.kill(signal);
    },
    async stop(graceMs = 5_000) {
      if (!done) {
        child.kill('SIGTERM');
        const t = setTimeout(() => killGroup('SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      }
      // App children that outlived their parent.
      killGroup('SIGKILL');
      running.delete(proc);
    },
  };
  running.add(proc);
  void exited.then(() => {
    if (!proc.alive()) killGroup('SIGKILL');
  });
  return proc;
}

/** Kill every process these helpers started (afterAll). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop(3_000)));
}

process.once('exit', () => {
  for (const p of running)
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {
      // gone
    }
});

/** The first JSON document on the process's stdout (--json commands print one). */
async function firstJson<T>(p: Proc, what: string, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = p.stdout().trim();
    if (text.endsWith('}'))
      try {
        return JSON.parse(text) as T;
      } catch {
        // not complete yet
      }
    if (!p.alive())
      throw new Error(
        `${what} exited before it printed its result:\n${p.stdout()}\n${p.stderr().slice(-4000)}`,
      );
    if (Date.now() > deadline)
      throw new Error(`${what} printed no result in ${timeoutMs} ms:\n${p.stderr().slice(-4000)}`);
    await sleep(50);
  }
}

export interface SuperLinkOptions {
  stateDir: string;
  /** The server certificate: `pki.server`, or an enrolled server startup kit (`--kit`). */
  pki?: Pki;
  kit?: string;
  nodeAuth?: boolean;
  crl?: string;
  crlRefreshSeconds?: number;
  /** Fixed ports (e.g. to restart on the same ones); 0 picks free ports. */
  ports?: { fleet: number; control: number; serverAppIo: number };
  /** More flags for `pollen superlink` (e.g. its limits). */
  args?: string[];
}

export interface SuperLinkProc extends Proc {
  fleetUrl: string;
  controlUrl: string;
  serverAppIoUrl: string;
  ports: { fleet: number; control: number; serverAppIo: number };
  options: SuperLinkOptions;
}

const portOf = (url: string): number => Number(new URL(url).port);

export async function startSuperLink(o: SuperLinkOptions): Promise<SuperLinkProc> {
  const ports = o.ports ?? { fleet: 0, control: 0, serverAppIo: 0 };
  const args = [
    'superlink',
    '--json',
    ...(o.kit
      ? ['--kit', o.kit]
      : ['--cert', o.pki!.server.cert, '--key', o.pki!.server.key, '--root-ca', o.pki!.server.ca]),
    '--state-dir',
    o.stateDir,
    '--fleet-address',
    `127.0.0.1:${ports.fleet}`,
    '--control-address',
    `127.0.0.1:${ports.control}`,
    '--serverappio-address',
    `127.0.0.1:${ports.serverAppIo}`,
    '--log-level',
    'info',
  ];
  if (o.nodeAuth) args.push('--enable-supernode-auth');
  if (o.crl) args.push('--crl', o.crl);
  if (o.crlRefreshSeconds) args.push('--crl-refresh', String(o.crlRefreshSeconds));
  args.push(...(o.args ?? []));
  const p = launch(args);
  let r: { ok: boolean; fleet: string; control: string; serverAppIo: string };
  try {
    r = await firstJson(p, 'pollen superlink', 30_000);
  } catch (e) {
    await p.stop(1_000);
    throw e;
  }
  if (!r.ok) throw new Error(`pollen superlink failed: ${JSON.stringify(r)}`);
  return Object.assign(p, {
    fleetUrl: r.fleet,
    controlUrl: r.control,
    serverAppIoUrl: r.serverAppIo,
    ports: { fleet: portOf(r.fleet), control: portOf(r.control), serverAppIo: portOf(r.serverAppIo) },
    options: o,
  });
}

export interface SuperNodeOptions {
  /** SuperLink Fleet URL (https://127.0.0.1:PORT). */
  fleetUrl: string;
  cert: CertFiles;
  workDir: string;
  partitionId: number;
  /** More node config, KEY=VALUE each (e.g. num-partitions=2). */
  nodeConfig?: string[];
  heartbeatSeconds?: number;
  /** OpenSSH private key file (node-key mode). */
  authKey?: string;
  /** Wait until it printed its node id (default true). */
  waitConnected?: boolean;
}

export interface SuperNodeProc extends Proc {
  /** Set once connected. */
  nodeId: string;
  options: SuperNodeOptions;
  /** Resolves with the node id the node printed when it connected. */
  connected(timeoutMs?: number): Promise<string>;
}

export async function startSuperNode(o: SuperNodeOptions): Promise<SuperNodeProc> {
  mkdirSync(o.workDir, { recursive: true });
  const args = [
    'supernode',
    '--json',
    '--cert',
    o.cert.cert,
    '--key',
    o.cert.key,
    '--root-ca',
    o.cert.ca,
    '--superlink',
    new URL(o.fleetUrl).host,
    '--node-config',
    `partition-id=${o.partitionId}`,
    '--work-dir',
    o.workDir,
    '--heartbeat-interval',
    String(o.heartbeatSeconds ?? 1),
    '--log-level',
    'info',
  ];
  if (o.authKey) args.push('--auth-supernode-private-key', o.authKey);
  for (const pair of o.nodeConfig ?? []) args.push('--node-config', pair);
  const p = launch(args);
  const node = Object.assign(p, {
    nodeId: '',
    options: o,
    async connected(timeoutMs = 30_000): Promise<string> {
      const r = await firstJson<{ ok: boolean; nodeId: string }>(
        p,
        `pollen supernode ${o.cert.name}`,
        timeoutMs,
      );
      node.nodeId = r.nodeId;
      return r.nodeId;
    },
  });
  if (o.waitConnected !== false)
    try {
      await node.connected();
    } catch (e) {
      await p.stop(1_000);
      throw e;
    }
  return node;
}

// ---------------------------------------------------------------------------------------------
// The admin's CLI

/** POLLEN_CONFIG naming SuperLink "test" at the Control API, with the admin certificate. */
export function writeFederationConfig(path: string, controlUrl: string, admin: CertFiles): string {
  writeFileSync(
    path,
    [
      `default-superlink = "${FEDERATION}"`,
      '',
      `[superlinks.${FEDERATION}]`,
      `address = "${new URL(controlUrl).host}"`,
      `root-certificate = ${JSON.stringify(admin.ca)}`,
      `certificate = ${JSON.stringify(admin.cert)}`,
      `private-key = ${JSON.stringify(admin.key)}`,
      '',
    ].join('\n'),
  );
  return path;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: <T = any>() => T;
}

/** Run `pollen ARGS` to completion (without blocking the event loop). */
export function pollen(args: string[], o: { config?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: cliEnv(o.config ? { POLLEN_CONFIG: o.config } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`pollen ${args.join(' ')} took more than ${o.timeoutMs ?? 60_000} ms\n${stderr}`));
    }, o.timeoutMs ?? 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({
        code: code ?? -1,
        stdout,
        stderr,
        json: () => {
          try {
            return JSON.parse(stdout);
          } catch {
            throw new Error(`pollen ${args.join(' ')} printed no JSON (exit ${code}):\n${stdout}\n${stderr}`);
          }
        },
      });
    });
  });
}

/** Poll `check` until it returns a truthy value; fail with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  timeoutMs = 30_000,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    await sleep(intervalMs);
  }
}

/** The child processes (pids) of a process, from /proc via ps. */
export function childPids(pid: number): number[] {
  const r = spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => n > 0);
}

/** The processes (pids) of a process group, from ps. */
export function groupPids(pgid: number): number[] {
  const r = spawnSync('ps', ['-eo', 'pid=,pgid='], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number))
    .filter(([pid, group]) => pid! > 0 && group === pgid)
    .map(([pid]) => pid!);
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A whole federation for the admin: PKI, a SuperLink, a config file, helpers around them. */
export interface Federation {
  dir: string;
  pki: Pki;
  link: SuperLinkProc;
  config: string;
  nodes: SuperNodeProc[];
  pollen(args: string[], timeoutMs?: number): Promise<CliResult>;
  /**
   * `pollen ARGS` of the admin run inside the test process (`pollenInProcess`): what the helpers
   * below use, as a CLI process costs ~1 s of CPU each. What a test asserts of the CLI as a
   * process uses `pollen` (or a helper's `spawn: true`).
   */
  query(args: string[]): Promise<CliResult>;
  /** Start a SuperNode with client certificate `name` and node config partition-id. */
  addNode(name: string, partitionId: number, extra?: Partial<SuperNodeOptions>): Promise<SuperNodeProc>;
  /** Restart the SuperLink (after it was stopped or killed) on the same state dir and ports. */
  restartLink(): Promise<SuperLinkProc>;
  /** `pollen supernode list --json`, in this process (`query`) unless `spawn`. */
  nodeList(o?: {
    spawn?: boolean;
  }): Promise<{ nodeId: string; name: string; status: string; registered: boolean }[]>;
  /** A channel to the Fleet API under client certificate `name` (a prober: no SuperNode behind it). */
  fleetChannel(name: string, o?: { defaultTimeoutMs?: number }): Promise<RpcChannel>;
  close(): Promise<void>;
}

export async function startFederation(
  prefix: string,
  o: Omit<SuperLinkOptions, 'stateDir' | 'pki'> & { pki?: Pki; dir?: string } = {},
): Promise<Federation> {
  const t = o.dir ? { dir: o.dir, cleanup: () => {} } : tempDir(prefix);
  const pki = o.pki ?? (await makePki(t.dir));
  const link = await startSuperLink({ ...o, stateDir: join(t.dir, 'superlink'), pki });
  const config = writeFederationConfig(join(t.dir, 'config.toml'), link.controlUrl, pki.admin);
  const fed: Federation = {
    dir: t.dir,
    pki,
    link,
    config,
    nodes: [],
    pollen: (args, timeoutMs) => pollen(args, { config, timeoutMs }),
    query: (args) => pollenInProcess(args, { env: cliEnv({ POLLEN_CONFIG: config }) }),
    async addNode(name, partitionId, extra = {}) {
      const node = await startSuperNode({
        fleetUrl: fed.link.fleetUrl,
        cert: await pki.cert(name),
        workDir: join(t.dir, 'nodes', name),
        partitionId,
        ...extra,
      });
      fed.nodes.push(node);
      return node;
    },
    async restartLink() {
      fed.link = await startSuperLink({ ...fed.link.options, ports: fed.link.ports });
      return fed.link;
    },
    async nodeList(o = {}) {
      const args = ['supernode', 'list', FEDERATION, '--json'];
      const r = await (o.spawn ? fed.pollen(args) : fed.query(args));
      if (r.code !== 0) throw new Error(`supernode list failed: ${r.stdout}${r.stderr}`);
      return r.json().nodes;
    },
    async fleetChannel(name, o = {}) {
      return openChannel({ baseUrl: fed.link.fleetUrl, tls: tlsOf(await pki.cert(name)), ...o });
    },
    async close() {
      await Promise.all(fed.nodes.map((n) => n.stop(3_000)));
      await fed.link.stop(8_000);
      t.cleanup();
    },
  };
  return fed;
}

// ---------------------------------------------------------------------------------------------
// Runs of the tiny app, as the admin sees them

export interface RunJson {
  runId: string;
  status: string;
  subStatus: string | null;
  reason: string | null;
}

export interface RoundJson {
  round: number;
  metrics: Record<string, number>;
  nodes: string[];
  replies: number;
  failures: number;
}

export interface RunDetails {
  run: RunJson;
  rounds: RoundJson[];
}

/** `--run-config KEY=VALUE` for each override. */
const runConfig = (config: string[]): string[] => config.flatMap((c) => ['--run-config', c]);

/** What the helpers below run `pollen` with: in this process (`query`), or as a process (`spawn`). */
export interface AdminCli {
  spawn?: boolean;
}

const admin = (fed: Federation, args: string[], o: AdminCli, timeoutMs?: number): Promise<CliResult> =>
  o.spawn ? fed.pollen(args, timeoutMs) : fed.query(args);

/** `pollen list FEDERATION --run-id RUN --json`: the run and its rounds. */
export async function runDetails(fed: Federation, runId: string, o: AdminCli = {}): Promise<RunDetails> {
  const r = await admin(fed, ['list', FEDERATION, '--run-id', runId, '--json'], o);
  expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
  return r.json();
}

/** `pollen run APP --json` (the tiny app unless named) with run config overrides, without waiting for it; the run's id. */
export async function startRun(
  fed: Federation,
  config: string[],
  app = TINY_APP,
  o: AdminCli = {},
): Promise<string> {
  const r = await admin(fed, ['run', app, FEDERATION, '--json', ...runConfig(config)], o);
  expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
  return r.json().runId;
}

/** The details of run `runId` once it finished (polled every half second). */
export function finishedRun(fed: Federation, runId: string, timeoutMs = 60_000): Promise<RunDetails> {
  return waitFor(
    `run ${runId} to finish`,
    async () => {
      const d = await runDetails(fed, runId);
      return d.run.status === 'finished' ? d : undefined;
    },
    timeoutMs,
    500,
  );
}

/** `pollen run APP --stream --json` (the tiny app by default) with run config overrides; expects it to complete. */
export async function completedRun(
  fed: Federation,
  config: string[],
  app = TINY_APP,
  o: AdminCli = {},
): Promise<RunDetails> {
  const r = await admin(fed, ['run', app, FEDERATION, '--stream', '--json', ...runConfig(config)], o, 90_000);
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  const out = r.json<RunDetails>();
  expect(out.run).toMatchObject({ status: 'finished', subStatus: 'completed' });
  return out;
}
