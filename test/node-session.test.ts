/**
 * Node-key sessions end (1 h by default); a SuperNode opens a new one before its session runs
 * out, so a long run never sees NODE_SESSION_EXPIRED. Here sessions last 3 s and the node keeps
 * working for several of them: a real SuperLink and SuperNode in this process, an ssh-keygen key.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  nodeIdFromPublicKey,
  parseSshPrivateKey,
  parseSshPublicKey,
  sshPublicKeyLine,
} from '../src/pki/openssh.js';
import { ClientApp } from '../src/sdk/app.js';
import { Message } from '../src/sdk/message.js';
import { MetricRecord, RecordDict } from '../src/sdk/records.js';
import { type SuperLink, startSuperLink } from '../src/superlink/superlink.js';
import { type SuperNode, type SuperNodeEvent, startSuperNode } from '../src/supernode/supernode.js';
import { messageToWire } from '../src/transport/wire.js';
import { sshKeygen } from './support/federation.js';
import { runningRun } from './support/runs.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-session-'));
const SESSION_MS = 3_000;
let superlink: SuperLink;
let node: SuperNode;
const events: SuperNodeEvent[] = [];
let runId = '';

beforeAll(async () => {
  const local = { host: '127.0.0.1', port: 0 };
  superlink = await startSuperLink({
    stateDir: join(dir, 'superlink'),
    fleet: local,
    control: local,
    serverAppIo: local,
    nodeAuth: true,
    nodeSessionTtlMs: SESSION_MS,
    log: pino({ level: 'silent' }),
  });
  const keyFile = sshKeygen(join(dir, 'node-key'), 256, 'site-1');
  const pub = parseSshPublicKey(readFileSync(`${keyFile}.pub`, 'utf8'));
  await superlink.state.registerNodeKey({
    nodeId: nodeIdFromPublicKey(pub),
    publicKey: sshPublicKeyLine(pub),
    name: 'site-1',
  });
  const app = new ClientApp();
  app.train((msg) => msg.createReply(new RecordDict({ m: new MetricRecord({ ok: 1 }) })));
  node = await startSuperNode({
    superlink: superlink.fleetUrl,
    name: 'site-1',
    authKey: parseSshPrivateKey(readFileSync(keyFile)),
    workDir: join(dir, 'node'),
    heartbeatIntervalMs: 1_000,
    pollWaitMs: 2_000,
    app,
    log: pino({ level: 'silent' }),
    onEvent: (e) => events.push(e),
  });
  await node.ready;
  runId = await runningRun(superlink.state, 'session');
}, 30_000);

afterAll(async () => {
  await node?.close();
  await superlink?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function roundTrip(): Promise<boolean> {
  const { wire } = messageToWire(
    Message.create({
      content: new RecordDict(),
      dstNodeId: node.nodeId,
      messageType: 'train',
      runId,
      ttlSeconds: 30,
    }),
  );
  const [id] = await superlink.link.pushInstructions(runId, [wire]);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const replies = await superlink.link.pullReplies(runId, [id!], 1_000);
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
      await new Promise((r) => setTimeout(r, SESSION_MS));
      expect(await roundTrip()).toBe(true);
    }
    // One connection all along: never refused, never reconnected.
    expect(events.filter((e) => e.kind === 'disconnected')).toEqual([]);
    expect(events.filter((e) => e.kind === 'connected')).toHaveLength(1);
    expect((await superlink.state.getNode(node.nodeId))?.status).toBe('online');
  }, 40_000);
});
