/**
 * The main job: `pollen demo` runs a whole secure federation with real processes (CA,
 * Certificate Service, SuperLink with mutual TLS and node keys, three sites that enroll
 * themselves, MNIST) and prints its summary as one JSON document; with --app pytorch-mnist the
 * PyTorch example, its ClientApps and ServerApp Python processes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { leaked, secretsIn } from './support/secrets.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'pollen.js');
const dir = mkdtempSync(join(tmpdir(), 'pollen-demo-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pollen(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, NO_COLOR: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Stop what `--keep` left running, and wait until each process is gone. */
async function stopKept(pids: number[]): Promise<void> {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 200 && pids.some(alive); i++) await new Promise((res) => setTimeout(res, 50));
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
}

/** Processes whose command line or working folder is in the workspace (Python apps run in it). */
function processesIn(ws: string): string[] {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => {
      const [pid, command] = l.trim().split(/\s+/);
      if (pid === undefined || command === undefined || command === 'ps') return false;
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {} // gone already
      return l.includes(ws) || cwd.startsWith(ws);
    });
}

describe('pollen demo', () => {
  it('trains MNIST across three enrolled sites to at least 90% accuracy and shuts everything down', async () => {
    const ws = join(dir, 'ws');
    const r = await pollen(['demo', '-w', ws, '--json']);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.ok).toBe(true);
    expect(s.status).toBe('finished:completed');
    expect(s.sites.map((x: { name: string }) => x.name)).toEqual(['site-1', 'site-2', 'site-3']);
    expect(new Set(s.sites.map((x: { nodeId: string }) => x.nodeId)).size).toBe(3);
    expect(s.rounds).toHaveLength(3);
    for (const round of s.rounds) expect(round.nodes).toBe(3);
    expect(s.accuracy).toBeGreaterThanOrEqual(0.9);
    // the model (784·128 + 128 + 128·10 + 10 floats ≈ 0.4 MB) goes out to and back from 3 nodes
    expect(s.bytesMoved).toBeGreaterThan(3 * 2 * 3 * 400_000);
    expect(s.keptRunning).toBe(false);
    // every site got its certificate by enrolling (the kits were built without one)
    for (const site of ['site-1', 'site-2', 'site-3'])
      expect(existsSync(join(ws, 'sites', site, 'startup', `${site}.crt`))).toBe(true);
    expect(r.stderr).toMatch(/3\/3 SuperNodes online/);
    expect(r.stderr).toMatch(/round +3 /);
    // shut down cleanly: no process of this workspace is left
    const left = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(ws) && !l.startsWith('ps '));
    expect(left).toEqual([]);
  }, 300_000);

  it('--app pytorch-mnist: two sites train the PyTorch example with a Python interpreter the demo names, to at least 90%', async () => {
    const ws = join(dir, 'ws-pytorch');
    const r = await pollen([
      'demo',
      '--app',
      'pytorch-mnist',
      '--sites',
      '2',
      '--rounds',
      '2',
      '-w',
      ws,
      '--json',
    ]);
    expect(r.code, r.stderr.slice(-3000) + r.stdout.slice(-2000)).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ ok: true, app: 'pytorch-mnist', status: 'finished:completed' });
    expect(s.python).toMatchObject({ path: expect.any(String), version: expect.stringMatching(/^3\.\d+/) });
    expect(r.stderr).toContain(
      `Python for pytorch-mnist: ${s.python.path} (${s.python.from}, Python ${s.python.version})`,
    );
    expect(s.rounds.map((x: { round: number; nodes: number }) => [x.round, x.nodes])).toEqual([
      [1, 2],
      [2, 2],
    ]);
    // Scored by the Python ServerApp on digits no site holds; the nodes' own scores come with it.
    expect(s.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(s.rounds[1].metrics).toMatchObject({
      accuracy: expect.any(Number),
      'train-loss': expect.any(Number),
    });
    expect(s.loss).toBeLessThan(s.rounds[0].metrics['centralized-loss']);
    // the CNN's ~55k float32 parameters (≈ 0.22 MB) go out to and back from 2 nodes, twice a round
    expect(s.bytesMoved).toBeGreaterThan(2 * 2 * 2 * 220_000);
    expect(r.stderr).toMatch(/Run the PyTorch MNIST app \(Python\) for 2 rounds/);
    expect(r.stderr).toMatch(/round +2 /);
    // Shut down: no pollen process and no Python app process is left in the workspace.
    expect(processesIn(ws)).toEqual([]);
  }, 420_000);

  it('--oidc: a researcher with no kit is invited into the demo federation, logs in, accepts, and starts the run under her own name', async () => {
    const ws = join(dir, 'ws-oidc');
    // Kept running, with access tokens that last a second: her login must outlive the demo.
    const r = await pollen([
      'demo',
      '--oidc',
      '--sites',
      '2',
      '--rounds',
      '1',
      '-w',
      ws,
      '--keep',
      '--access-token-ttl',
      '1',
      '--json',
    ]);
    expect(r.code, r.stderr.slice(-3000) + r.stdout.slice(-2000)).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.status).toBe('finished:completed');
    expect(s.researcher).toMatchObject({ email: 'researcher@pollen-demo.example' });
    expect(s.researcher.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // The admin made a federation of the two sites and invited her into it by her verified e-mail.
    expect(s.study).toMatchObject({
      name: 'demo-study',
      invitation: { email: 'researcher@pollen-demo.example', role: 'lead', status: 'accepted' },
      member: { email: 'researcher@pollen-demo.example', role: 'lead' },
    });
    expect(s.study.nodes.sort()).toEqual(s.sites.map((x: { nodeId: string }) => x.nodeId).sort());
    expect(r.stderr).toMatch(/researcher@pollen-demo\.example accepted: lead of demo-study/);
    // The run is hers, in that federation, and reached both its nodes.
    expect(s.federation).toBe('demo-study');
    expect(s.createdBy).toBe('researcher@pollen-demo.example');
    for (const round of s.rounds) expect(round.nodes).toBe(2);
    // The audit trail names her as the one who started the run, and verifies, anchored.
    expect(s.audit).toMatchObject({ verified: true, runStartedBy: 'researcher@pollen-demo.example' });
    expect(s.audit.anchoredAt).toBe(s.audit.entries);
    expect(r.stderr).toMatch(
      /started by researcher@pollen-demo\.example .*\n.*verified: \d+ entries, chain intact/,
    );
    expect(r.stderr).toMatch(/the demo signs in for researcher@pollen-demo\.example/);
    // Her login, pinned by the root fingerprint: a root and a token file, no certificate.
    expect(existsSync(join(ws, 'researcher', 'roots', 'demo.pem'))).toBe(true);
    expect(existsSync(join(ws, 'researcher', 'logins', 'demo.json'))).toBe(true);
    expect(r.stderr).not.toMatch(/oidc-provider (WARNING|NOTICE)/);
    try {
      // After the demo: her access token has expired, and the kept provider refreshes it.
      const tokenFile = join(ws, 'researcher', 'logins', 'demo.json');
      const before = JSON.parse(readFileSync(tokenFile, 'utf8')) as {
        accessToken: string;
        expiresAt: number;
      };
      await new Promise((res) => setTimeout(res, Math.max(0, before.expiresAt - Date.now() + 50)));
      const list = await pollen(['list', 'demo-study', '--json'], { POLLEN_CONFIG: s.researcher.config });
      expect(list.code, list.stdout + list.stderr).toBe(0);
      expect(JSON.parse(list.stdout).runs).toHaveLength(1);
      const after = JSON.parse(readFileSync(tokenFile, 'utf8')) as { accessToken: string; expiresAt: number };
      expect(after.accessToken).not.toBe(before.accessToken);

      // A pipeline's service account lists the runs with its secret.
      const adminEnv = { POLLEN_CONFIG: join(ws, 'admin', 'config.toml') };
      const made = await pollen(['service-account', 'create', 'pipeline', '-r', 'lead', '--json'], adminEnv);
      expect(made.code, made.stdout + made.stderr).toBe(0);
      const secret = JSON.parse(made.stdout).secret as string;
      const byAccount = await pollen(['list', '--json'], { ...adminEnv, POLLEN_TOKEN: secret });
      // Its secret was accepted (what the account may see is not this test's concern).
      expect(byAccount.stdout + byAccount.stderr).not.toMatch(/UNAUTHENTICATED|SERVICE_ACCOUNT/);

      // Secrets never logged: no key, token, API key or secret of the workspace (nor the account's)
      // in the stderr of any process of the run, nor in any log file.
      const isLog = (p: string) => p.startsWith(join(ws, 'logs')) || p.endsWith('log.txt');
      const secrets = [...secretsIn(ws, isLog), { what: 'service-account secret', value: secret }];
      expect(secrets.filter((x) => x.what.startsWith('private key')).length).toBeGreaterThanOrEqual(3);
      expect(secrets.some((x) => x.what.startsWith('access token'))).toBe(true);
      expect(secrets.some((x) => x.what.startsWith('refresh token'))).toBe(true);
      const logs = [r.stderr, list.stderr, made.stderr, byAccount.stderr];
      const logFiles = readdirSync(join(ws, 'logs')).map((f) => join(ws, 'logs', f));
      for (const f of logFiles) logs.push(readFileSync(f, 'utf8'));
      expect(logFiles.length).toBeGreaterThanOrEqual(4);
      expect(leaked(logs.join('\n'), secrets)).toEqual([]);
    } finally {
      await stopKept(s.pids);
    }
  }, 300_000);
});
