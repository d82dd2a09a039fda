/**
 * The SuperLink's per-node limits against real clients (mutual TLS on 127.0.0.1, the SuperLink
 * in this process so its accounts can be read): a node that floods is refused with a precise
 * code while the others go on, the accounts stay exact after each refusal, and what was
 * refused is given back once it is collected.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FabSchema } from '../src/gen/pollen/v1/records_pb.js';
import { ClientApp } from '../src/sdk/app.js';
import { Message } from '../src/sdk/message.js';
import { ArrayRecord, MetricRecord, RecordDict } from '../src/sdk/records.js';
import { type SuperNode, type SuperNodeEvent, startSuperNode } from '../src/supernode/supernode.js';
import { rpcChunkTransport } from '../src/transport/chunk-rpc.js';
import { uploadChunks } from '../src/transport/chunk-transfer.js';
import { fromConnectError } from '../src/transport/errors.js';
import { messageToWire } from '../src/transport/wire.js';
import { outcomeOf as codeOf } from './support/errors.js';
import { waitFor } from './support/federation.js';
import { type InProcessLink, type Site, startInProcessLink, startLocalSuperLink } from './support/inproc.js';
import { pushTrain } from './support/runs.js';

const KiB = 1024;
const sha = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');
const chunk = (n = 256 * KiB): { id: string; data: Uint8Array } => {
  const data = randomBytes(n);
  return { id: sha(data), data };
};

/** PUT fresh chunks into the run's scope until one is refused (at most `max` tries). */
async function flood(site: Site, runId: string, max: number): Promise<{ stored: number; refusal: string }> {
  for (let stored = 0; stored < max; stored++) {
    const c = chunk();
    const code = await codeOf(site.channel.bulk!.put(c.id, c.data, undefined, { 'pollen-chunk-run': runId }));
    if (code !== 'ok') return { stored, refusal: code };
  }
  return { stored: max, refusal: 'none' };
}

describe('per-node chunk quota in a run', () => {
  let l: InProcessLink;
  let flooder: Site;
  let honest: Site;
  beforeAll(async () => {
    l = await startInProcessLink('pollen-limits-quota-', {
      limits: { nodeChunkQuotaBytes: 2048 * KiB },
      chunkMemoryBytes: 1024 * KiB, // the rest of the quota goes to files
      // Unused chunks go 4 s after their last use: long enough for the first test to count them.
      collector: { everyMs: 100, runChunkGraceMs: 4_000 },
    });
    flooder = await l.site('flooder');
    honest = await l.site('honest');
  });
  afterAll(async () => {
    await l?.close();
  });

  it('refuses a node that floods its scope with CHUNK_QUOTA_EXCEEDED; another node still gets its whole share', async () => {
    const { runId } = await l.run();
    await l.instruct(runId, flooder.nodeId);
    await l.instruct(runId, honest.nodeId);
    const { stored, refusal } = await flood(flooder, runId, 64);
    expect(refusal).toBe('CHUNK_QUOTA_EXCEEDED');
    expect(stored).toBe(8); // 8 × 256 KiB = the 2 MiB quota
    expect(l.superlink.link.relay.heldBy(runId, flooder.nodeId)).toBe(2048 * KiB);
    // The RPC lane keeps the same account.
    const more = chunk();
    expect(
      await codeOf(
        uploadChunks(rpcChunkTransport(flooder.fleet), new Map([[more.id, more.data]]), { scope: { runId } }),
      ),
    ).toBe('CHUNK_QUOTA_EXCEEDED');
    expect(l.superlink.link.relay.heldBy(runId, flooder.nodeId)).toBe(2048 * KiB);
    // The honest node's share is untouched: it uploads its whole quota.
    const mine = Array.from({ length: 8 }, () => chunk());
    const r = await uploadChunks(honest.chunks, new Map(mine.map((c) => [c.id, c.data])), {
      scope: { runId },
    });
    expect(r.sent).toBe(8);
    expect(l.superlink.link.relay.heldBy(runId, honest.nodeId)).toBe(2048 * KiB);
  });

  it('gives the quota back once the flood is collected (no message names it), while the run goes on', async () => {
    const { runId } = await l.run();
    await l.instruct(runId, flooder.nodeId);
    expect((await flood(flooder, runId, 64)).refusal).toBe('CHUNK_QUOTA_EXCEEDED');
    await waitFor(
      'the flood to be collected',
      () => l.superlink.link.relay.heldBy(runId, flooder.nodeId) === 0,
      20_000,
      100,
    );
    const again = await flood(flooder, runId, 64);
    expect(again).toEqual({ stored: 8, refusal: 'CHUNK_QUOTA_EXCEEDED' });
  });
});

describe('disk budget for chunk files', () => {
  let l: InProcessLink;
  beforeAll(async () => {
    l = await startInProcessLink('pollen-limits-disk-', {
      limits: { chunkDiskBudgetBytes: 1024 * KiB },
      chunkMemoryBytes: 0, // every run chunk is a file
    });
  });
  afterAll(async () => {
    await l?.close();
  });

  it('refuses chunk files past it with STORAGE_FULL, for run scopes and the shared store alike', async () => {
    const a = await l.site('site-a');
    const { runId, appChunks } = await l.run();
    await l.instruct(runId, a.nodeId);
    const { stored, refusal } = await flood(a, runId, 16);
    expect({ stored, refusal }).toEqual({ stored: 4, refusal: 'STORAGE_FULL' });
    // The ServerApp and an admin's bundle upload meet the same full disk.
    const c = chunk();
    expect(await codeOf(uploadChunks(appChunks, new Map([[c.id, c.data]])))).toBe('STORAGE_FULL');
    const { chunks: admin } = await l.admin();
    expect(await codeOf(uploadChunks(admin, new Map([[c.id, c.data]])))).toBe('STORAGE_FULL');
    expect(await l.superlink.link.chunks.has(c.id)).toBe(false);
    expect(l.superlink.link.relay.stats()).toMatchObject({ onDisk: 4, diskBytes: 1024 * KiB });
    // The run ends: its files go, and the budget is free again.
    await l.superlink.link.runFinished(runId);
    expect(l.superlink.link.relay.stats()).toMatchObject({ onDisk: 0, diskBytes: 0 });
    expect((await uploadChunks(admin, new Map([[c.id, c.data]]))).sent).toBe(1);
  });
});

describe('collection of the shared store', () => {
  let l: InProcessLink;
  beforeAll(async () => {
    l = await startInProcessLink('pollen-limits-gc-', {
      // Shared chunks go 3 s after they were written: the bundle is registered well before.
      collector: { everyMs: 100, sharedEveryMs: 100, sharedGraceMs: 3_000 },
    });
  });
  afterAll(async () => {
    await l?.close();
  });

  it('removes chunks no bundle or message names within seconds, also while a run is active', async () => {
    const a = await l.site('site-a');
    const { runId } = await l.run();
    await l.instruct(runId, a.nodeId);
    const { chunks: admin } = await l.admin();
    const orphan = chunk(10 * KiB);
    const bundle = chunk(10 * KiB);
    await uploadChunks(admin, new Map([orphan, bundle].map((c) => [c.id, c.data])));
    await l.superlink.link.fabs.register(
      create(FabSchema, {
        hash: `sha256:${bundle.id}`,
        size: BigInt(bundle.data.byteLength),
        chunkIds: [bundle.id],
      }),
    );
    await waitFor(
      'the orphan to be collected',
      async () => !(await l.superlink.link.chunks.has(orphan.id)),
      20_000,
      100,
    );
    expect(await l.superlink.link.chunks.has(bundle.id)).toBe(true);
    expect((await l.superlink.state.getRun(runId))?.status).toBe('running');
  });
});

describe('per-node cap on unread replies', () => {
  let l: InProcessLink;
  beforeAll(async () => {
    l = await startInProcessLink('pollen-limits-replies-', {
      limits: { nodeReplyQueue: 4, nodeReplyQueueBytes: 1024 * KiB },
    });
  });
  afterAll(async () => {
    await l?.close();
  });

  /** A reply to `instructionId` whose arrays travel inline: about `kib` KiB of payload. */
  const replyOf = (runId: string, nodeId: string, instructionId: string, kib: number) => {
    const arrays: Record<string, Float32Array> = {};
    for (let i = 0; i < kib / 32; i++) arrays[`w${i}`] = new Float32Array(8 * KiB).fill(i);
    return messageToWire(
      Message.create({
        content: new RecordDict({ model: ArrayRecord.fromArrays(arrays) }),
        dstNodeId: '0',
        messageType: 'train',
        runId,
        ttlSeconds: 60,
      }).withMetadata({
        srcNodeId: nodeId,
        replyToMessageId: instructionId,
        messageId: randomBytes(8).toString('hex'),
      }),
    ).wire;
  };
  const push = async (site: Site, reply: ReturnType<typeof replyOf>) =>
    (await site.fleet.pushMessages({ messages: [reply] })).results[0]!.errorCode;

  it('refuses replies past the bytes or the count with REPLY_QUEUE_FULL; a read gives room back', async () => {
    const flooder = await l.site('flooder');
    const honest = await l.site('honest');
    const { runId, app } = await l.run();
    const open = [];
    for (let i = 0; i < 6; i++) open.push(await l.instruct(runId, flooder.nodeId));
    // Three replies of 320 KiB fit in 1 MiB; a fourth does not.
    for (const id of open.slice(0, 3))
      expect(await push(flooder, replyOf(runId, flooder.nodeId, id, 320))).toBe('');
    const refused = await flooder.fleet.pushMessages({
      messages: [replyOf(runId, flooder.nodeId, open[3]!, 320)],
    });
    expect(refused.results[0]).toMatchObject({ errorCode: 'REPLY_QUEUE_FULL' });
    expect(refused.results[0]!.errorMessage).toMatch(/3 replies .* waiting to be read/);
    // Small replies still fit the bytes, but not the count (4).
    expect(await push(flooder, replyOf(runId, flooder.nodeId, open[3]!, 32))).toBe('');
    expect(await push(flooder, replyOf(runId, flooder.nodeId, open[4]!, 32))).toBe('REPLY_QUEUE_FULL');
    expect(l.superlink.link.replyQueues.queued(flooder.nodeId)).toMatchObject({ replies: 4 });
    // Another node's replies are not held back.
    const theirs = await l.instruct(runId, honest.nodeId);
    expect(await push(honest, replyOf(runId, honest.nodeId, theirs, 320))).toBe('');
    // The ServerApp reads: the room comes back, and the refused instruction is still open.
    const { messages } = await app.pullReplies({ messageIds: [...open.slice(0, 4), theirs], waitMs: 0 });
    expect(messages).toHaveLength(5);
    expect(l.superlink.link.replyQueues.queued(flooder.nodeId)).toEqual({ replies: 0, bytes: 0 });
    expect(await push(flooder, replyOf(runId, flooder.nodeId, open[4]!, 320))).toBe('');
    // A run's end releases what nobody read.
    expect(await push(flooder, replyOf(runId, flooder.nodeId, open[5]!, 320))).toBe('');
    await l.superlink.link.runFinished(runId);
    expect(l.superlink.link.replyQueues.queued(flooder.nodeId)).toEqual({ replies: 0, bytes: 0 });
  });
});

describe('per-node request rate', () => {
  let l: InProcessLink;
  beforeAll(async () => {
    l = await startInProcessLink('pollen-limits-rate-', {
      limits: { nodeRatePerSecond: 0.5, nodeBurst: 30 },
    });
  });
  afterAll(async () => {
    await l?.close();
  });

  it('refuses a node past its rate with RATE_LIMITED on every path, while another node is served', async () => {
    const flooder = await l.site('flooder');
    const honest = await l.site('honest');
    const { runId } = await l.run();
    let served = 0;
    let refused: ReturnType<typeof fromConnectError> | undefined;
    const since = Date.now();
    // Heartbeats take the direct gRPC path; the loop stops at the first refusal (or 100 calls).
    for (let i = 0; i < 100 && !refused; i++)
      await flooder.fleet.heartbeat({ heartbeatIntervalMs: 60_000 }).then(
        () => served++,
        (e) => {
          refused = fromConnectError(e);
        },
      );
    expect(refused?.code).toBe('RATE_LIMITED');
    expect(refused?.message).toMatch(/more than 0.5 requests per second \(bursts of 30\); retry in \d+ ms/);
    // The burst (less its activation) and what refilled meanwhile, one every 2 s.
    expect(served).toBeGreaterThanOrEqual(29);
    expect(served).toBeLessThanOrEqual(30 + Math.ceil((Date.now() - since) / 2_000));
    // The other paths (a token comes every 2 s): an RPC through Connect, and the bulk chunk route.
    expect(await codeOf(flooder.fleet.getRun({ runId }))).toBe('RATE_LIMITED');
    expect(await codeOf(flooder.channel.bulk!.get('0'.repeat(64)))).toBe('RATE_LIMITED');
    // The other node is served on all of them.
    await honest.fleet.heartbeat({ heartbeatIntervalMs: 60_000 });
    expect((await honest.fleet.getRun({ runId })).run?.runId).toBe(runId);
    expect(await codeOf(honest.channel.bulk!.get('0'.repeat(64)))).toBe('CHUNK_MISSING');
    // That the flooder is served again once its bucket refills is driven by a clock in
    // src/superlink/fleet-service.test.ts (a real refill here would take seconds).
  });
});

describe('an honest SuperNode at its request rate', () => {
  let l: InProcessLink;
  let node: SuperNode | undefined;
  const events: SuperNodeEvent[] = [];
  const logs: string[] = [];
  const waits: number[] = [];
  const workDir = join(tmpdir(), `pollen-limits-node-${randomBytes(4).toString('hex')}`);
  beforeAll(async () => {
    l = await startInProcessLink('pollen-limits-node-', { limits: { nodeRatePerSecond: 4, nodeBurst: 4 } });
  });
  afterAll(async () => {
    await node?.close();
    await l?.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('keeps its connection and delivers every reply when the SuperLink answers RATE_LIMITED', async () => {
    const app = new ClientApp();
    app.train((msg) => msg.createReply(new RecordDict({ m: new MetricRecord({ ok: 1 }) })));
    node = await startSuperNode({
      superlink: l.superlink.fleetUrl,
      tls: await l.tls('site-1'),
      name: 'site-1',
      workDir,
      memoryChunks: true,
      heartbeatIntervalMs: 1_000,
      // Polling without waiting, 20 times a second against a rate of 4: refused most of the time.
      pollWaitMs: 0,
      pollIntervalMs: 50,
      app,
      log: pino(
        { level: 'warn' },
        {
          write: (line: string) => {
            const { msg, retryInMs } = JSON.parse(line);
            logs.push(msg);
            if (msg === 'over the request rate; retrying') waits.push(retryInMs);
          },
        },
      ),
      onEvent: (e) => events.push(e),
    });
    const nodeId = await node.ready;
    const { runId } = await l.run();
    for (let round = 0; round < 3; round++) {
      const id = await pushTrain(l.superlink.link, runId, nodeId, 30);
      const reply = await waitFor(
        `the reply of round ${round}`,
        async () => (await l.superlink.link.pullReplies(runId, [id], 500))[0],
        20_000,
        0,
      );
      expect(reply.body.case).toBe('content');
    }
    // It was refused, and stayed connected all along (no reactivation, no lost reply).
    expect(l.superlink.link.rate.refused).toBeGreaterThan(0);
    expect(logs).toContain('over the request rate; retrying');
    // Each wait is the one the SuperLink sent over TLS (a token refills in 250 ms at 4 a second;
    // a fifth more at most), not the 375–625 ms backoff of a node told nothing.
    expect(waits.length).toBeGreaterThan(0);
    for (const ms of waits) expect(ms).toBeLessThanOrEqual(300);
    expect(logs).not.toContain('SuperLink unreachable or refused; retrying');
    expect(events.filter((e) => e.kind === 'connected')).toHaveLength(1);
    expect(events.filter((e) => e.kind === 'disconnected')).toEqual([]);
    expect(events.filter((e) => e.kind === 'reply' && e.error)).toEqual([]);
  }, 60_000);
});

describe('disk budget across a restart', () => {
  it('counts the chunk files already in the state folder when the SuperLink starts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pollen-limits-restart-'));
    const start = () =>
      startLocalSuperLink({
        stateDir: dir,
        nodeAuth: false,
        limits: { chunkDiskBudgetBytes: 600 * KiB },
        log: pino({ level: 'silent' }),
      });
    try {
      const first = await start();
      const [a, b, c] = [chunk(), chunk(), chunk()];
      await first.link.chunks.put(a.id, a.data);
      await first.link.chunks.put(b.id, b.data);
      await first.close();
      const second = await start();
      try {
        expect(await codeOf(second.link.chunks.put(c.id, c.data))).toBe('STORAGE_FULL');
        await second.link.chunks.delete(a.id);
        await second.link.chunks.put(c.id, c.data);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
