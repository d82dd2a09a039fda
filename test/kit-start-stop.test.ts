/**
 * A site as its operator runs it, with real processes: start.sh enrolls the kit through the
 * Certificate Service (in this process, on 127.0.0.1) and runs its SuperNode, which cannot get
 * through to its SuperLink. The log shows FLARE's success line while the participant runs
 * and holds each line once; stop.sh ends the supervisor, the participant and everything they
 * started, also while the SuperNode waits to reconnect.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { ensureBuilt, pollenInProcess, tempDir } from './support/cli.js';
import { cliEnv, groupPids } from './support/federation.js';

const t = tempDir('pollen-kit-run-');
let cs: LiveCertService;

beforeAll(async () => {
  ensureBuilt('cli/main.js');
  cs = await startLiveCertService(t.dir, {
    name: 'Kit Run',
    keyType: 'ec-p256',
    apiKey: 'pollen_test_admin_key_kit_run_0123456789abcdef',
    policy: testPolicy('kit-run', ['{ name: "everyone", match: {}, action: approve }']),
    hostnames: ['127.0.0.1'],
  });
}, 120_000);

afterAll(async () => {
  await cs?.close();
  t.cleanup();
});

/** Run a kit script without blocking this process (the Certificate Service answers from it). */
function script(path: string): Promise<{ code: number | null; stdout: string; ms: number }> {
  const began = Date.now();
  const child = spawn(path, [], { env: cliEnv(), stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  return new Promise((res) => child.on('close', (code) => res({ code, stdout, ms: Date.now() - began })));
}

describe('start.sh and stop.sh', () => {
  it('logs the enrollment while the site runs, each line once, and stop.sh ends every process it started', async () => {
    const kit = join(t.dir, 'hospital-1');
    // A SuperLink that is away at first (connections reset: the SuperNode retries with backoff),
    // then accepts connections and never answers: its activation waits until stop.sh comes.
    const held: Socket[] = [];
    let resets = 0;
    const away = createServer((socket) => {
      if (resets++ < 3) socket.resetAndDestroy();
      else held.push(socket);
    });
    await new Promise<void>((res) => away.listen(0, '127.0.0.1', res));
    const superlink = (away.address() as AddressInfo).port;
    const made = await pollenInProcess(
      ['package', '-n', 'hospital-1', '-e', `grpcs://127.0.0.1:${superlink}`, '-o', kit].concat([
        '--cert-service',
        cs.svc.url,
        '--token',
        cs.token('hospital-1'),
      ]),
      { clean: true },
    );
    expect(made.code, made.stderr).toBe(0);

    const started = await script(join(kit, 'startup/start.sh'));
    expect(started.code).toBe(0);
    const pgid = Number(readFileSync(join(kit, 'pollen.pid'), 'utf8'));
    const log = () => (existsSync(join(kit, 'log.txt')) ? readFileSync(join(kit, 'log.txt'), 'utf8') : '');
    await expect.poll(() => resets, { timeout: 30_000, interval: 100 }).toBeGreaterThan(3);

    // The participant runs (supervisor, pollen start with its SuperNode) and the line is there.
    expect(groupPids(pgid).length).toBeGreaterThanOrEqual(2);
    const saved = `Enrollment successful. Certificate saved to: ${join(kit, 'startup/hospital-1.crt')}`;
    expect(log()).toContain(`${saved}\n`);
    expect(log().indexOf(saved)).toBeLessThan(log().indexOf('connecting to'));

    const stopped = await script(join(kit, 'startup/stop.sh'));
    expect(stopped.code).toBe(0);
    expect(stopped.stdout).toBe('Stopped hospital-1\n');
    expect(stopped.ms).toBeLessThan(8_000);
    expect(groupPids(pgid)).toEqual([]);
    expect(existsSync(join(kit, 'pollen.pid'))).toBe(false);
    for (const socket of held) socket.destroy();
    away.close();

    // Each line once: every event is written by one reporter, not also as a JSON log record.
    const lines = log().trimEnd().split('\n');
    expect(lines.filter((l) => l.includes('Enrollment successful'))).toEqual([saved]);
    const retries = lines.filter((l) => /unreachable/i.test(l));
    // The resets met the node's connections and the probes that tell an outage from a refused
    // certificate: each outage it retried is one line, and none is also written as a JSON record.
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries.length).toBeLessThanOrEqual(3);
    expect(lines.filter((l) => l.startsWith('{'))).toEqual([]);
    for (const l of retries)
      expect(l).toMatch(/^› SuperLink unreachable \([A-Z_]+: .*\); next try in [\d.]+ s, at \d\d:\d\d:\d\d$/);
  });
});
