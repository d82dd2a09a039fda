/**
 * Node-key sessions end (1 h by default); a SuperNode opens a new one before its session runs
 * out, so a long run never sees NODE_SESSION_EXPIRED. Here sessions last 3 s and the node keeps
 * working for several of them: a real SuperLink and SuperNode in this process, an ssh-keygen key.
 * The seconds are the test's: the SuperNode runs on a ManualClock (its `clock` and `sleep`) and
 * the SuperLink, which reads Date, on the same time through a faked Date; no real time passes.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseSshPrivateKey } from '../src/pki/openssh.js';
import { ClientApp } from '../src/sdk/app.js';
import { MetricRecord, RecordDict } from '../src/sdk/records.js';
import type { SuperLink } from '../src/superlink/superlink.js';
import { type SuperNode, type SuperNodeEvent, startSuperNode } from '../src/supernode/supernode.js';
import { sshKeygen } from './support/federation.js';
import { registerKeyFile } from './support/fleet-client.js';
import { startLocalSuperLink } from './support/inproc.js';
import { ManualClock } from './support/manual-clock.js';
import { pushTrain, runningRun } from './support/runs.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-session-'));
const SESSION_MS = 3_000;
let superlink: SuperLink;
let node: SuperNode;
let clock: ManualClock;
const events: SuperNodeEvent[] = [];
const logs: string[] = [];
let runId = '';

beforeAll(async () => {
  // Before the SuperLink starts: its parts keep the Date.now they were given.
  vi.useFakeTimers({ toFake: ['Date'] });
  clock = new ManualClock({ onSet: (now) => vi.setSystemTime(now) });
  superlink = await startLocalSuperLink({
    stateDir: join(dir, 'superlink'),
    nodeAuth: true,
    nodeSessionTtlMs: SESSION_MS,
    log: pino({ level: 'silent' }),
  });
  const keyFile = sshKeygen(join(dir, 'node-key'), 256, 'site-1');
  await registerKeyFile(superlink.state, keyFile, { name: 'site-1' });
  const app = new ClientApp();
  app.train((msg) => msg.createReply(new RecordDict({ m: new MetricRecord({ ok: 1 }) })));
  node = await startSuperNode({
    superlink: superlink.fleetUrl,
    name: 'site-1',
    authKey: parseSshPrivateKey(readFileSync(keyFile)),
    workDir: join(dir, 'node'),
    heartbeatIntervalMs: 1_000,
    app,
    log: pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line).msg) }),
    onEvent: (e) => events.push(e),
    clock: clock.now,
    sleep: clock.sleep,
  });
  await node.ready;
  runId = await runningRun(superlink.state, 'session');
}, 30_000);

afterAll(async () => {
  await node?.close();
  await superlink?.close();
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

async function roundTrip(): Promise<boolean> {
  const id = await pushTrain(superlink.link, runId, node.nodeId, 30);
  // Real time: Date stands still between the test's steps.
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline) {
    const replies = await superlink.link.pullReplies(runId, [id], 1_000);
    if (replies.length > 0) {
      if (replies[0]!.body.case !== 'content') throw new Error(JSON.stringify(replies[0]!.body.value));
      return true;
    }
  }
  return false;
}

describe('node-key sessions', () => {
  it('are renewed before they expire: work keeps flowing over several session lifetimes', async () => {
    expect(await roundTrip()).toBe(true);
    for (let i = 0; i < 3; i++) {
      await clock.advance(SESSION_MS);
      expect(await roundTrip()).toBe(true);
    }
    // One connection all along: never refused, never reconnected.
    expect(events.filter((e) => e.kind === 'disconnected')).toEqual([]);
    expect(events.filter((e) => e.kind === 'connected')).toHaveLength(1);
    expect((await superlink.state.getNode(node.nodeId))?.status).toBe('online');
    // The clock drove them: a new session every 2.25 s (3/4 of one) of the 9 that passed.
    expect(logs.filter((m) => m === 'node-key session renewed').length).toBeGreaterThanOrEqual(3);
  }, 40_000);
});
