/**
 * Run-scoped chunks on a real SuperLink (mutual TLS, in this process): nodes upload a run's
 * chunks into their own scope over the HTTP/1.1 bulk lane, the SuperLink relays them without
 * hashing, readers verify, and nobody reads a scope that is not theirs.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Client } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteGrid } from '../src/apps/remote-grid.js';
import type { ServerAppIo } from '../src/gen/pollen/v1/appio_pb.js';
import { Message } from '../src/sdk/message.js';
import { ArrayRecord, RecordDict } from '../src/sdk/records.js';
import { inKernelMemory } from '../src/strategies/kernel-memory.js';
import { Http1BulkClient } from '../src/transport/bulk-client.js';
import { rpcChunkTransport } from '../src/transport/chunk-rpc.js';
import { downloadChunks, uploadChunks } from '../src/transport/chunk-transfer.js';
import type { ChunkTransport } from '../src/transport/chunk-transport.js';
import { MemoryChunkStore } from '../src/transport/chunks.js';
import { fromConnectError } from '../src/transport/errors.js';
import { messageToWire } from '../src/transport/wire.js';
import { outcomeOf as codeOf } from './support/errors.js';
import { type InProcessLink, type Site, startInProcessLink } from './support/inproc.js';
import { pendingRun } from './support/runs.js';

let l: InProcessLink;
let a: Site;
let b: Site;
let c: Site;
let runId = '';
let app: Client<typeof ServerAppIo>;
/** The ServerApp channel's chunk transport (the bulk route). */
let appChunks: ChunkTransport;

const sha = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');
const chunk = (n = 200_000): { id: string; data: Uint8Array } => {
  const data = randomBytes(n);
  return { id: sha(data), data };
};

beforeAll(async () => {
  l = await startInProcessLink('pollen-run-chunks-', {
    chunkMemoryBytes: 1_000_000, // small: some chunks go to files
  });
  a = await l.site('site-a');
  b = await l.site('site-b');
  c = await l.site('site-c');
  ({ runId, app, appChunks } = await l.run());
  // Sites A and B take part in the run; C has not been sent anything yet.
  await instruct(a.nodeId);
  await instruct(b.nodeId);
});

afterAll(async () => {
  await l?.close();
});

/** An instruction from the ServerApp to `nodeId` (makes the node a participant); its id. */
function instruct(nodeId: string): Promise<string> {
  return l.instruct(runId, nodeId);
}

describe('run-scoped chunks on the SuperLink', () => {
  it('moves chunk bytes over HTTP/1.1 keep-alive connections when the channel runs TLS', () => {
    expect(a.channel.bulk).toBeInstanceOf(Http1BulkClient);
  });

  it('relays a node upload as sent; the ServerApp reads it from that node only, verified', async () => {
    const good = chunk();
    const r = await uploadChunks(a.chunks, new Map([[good.id, good.data]]), { scope: { runId } });
    expect(r.sent).toBe(1);
    // The ServerApp names the source node: the chunk comes back intact.
    const got = new MemoryChunkStore();
    await downloadChunks(appChunks, [good.id], got, { scope: { runId, sourceNodeId: a.nodeId } });
    expect(Buffer.from((await got.get(good.id))!)).toEqual(Buffer.from(good.data));
    // Another node's scope does not have it.
    expect(
      await codeOf(
        downloadChunks(appChunks, [good.id], new MemoryChunkStore(), {
          scope: { runId, sourceNodeId: b.nodeId },
        }),
      ),
    ).toBe('CHUNK_MISSING');
  });

  it('stores bytes that do not match their id without hashing; the reader refuses them (end to end)', async () => {
    const claimed = chunk();
    const other = randomBytes(200_000);
    // Node B claims `claimed.id` for other bytes: the relay takes them into B's scope only.
    await b.channel.bulk!.put(claimed.id, other, undefined, { 'pollen-chunk-run': runId });
    expect(
      await codeOf(
        downloadChunks(appChunks, [claimed.id], new MemoryChunkStore(), {
          scope: { runId, sourceNodeId: b.nodeId },
        }),
      ),
    ).toBe('CHUNK_MISMATCH');
    // Node A's honest upload of the same id is not shadowed by B's.
    await uploadChunks(a.chunks, new Map([[claimed.id, claimed.data]]), { scope: { runId } });
    const got = new MemoryChunkStore();
    await downloadChunks(appChunks, [claimed.id], got, { scope: { runId, sourceNodeId: a.nodeId } });
    expect(sha((await got.get(claimed.id))!)).toBe(claimed.id);
  });

  it('lets a node send or read a run’s chunks only once the run sent it an instruction', async () => {
    const global = chunk();
    await uploadChunks(appChunks, new Map([[global.id, global.data]]));
    const read = () => downloadChunks(c.chunks, [global.id], new MemoryChunkStore(), { scope: { runId } });
    const mine = chunk();
    const send = () => uploadChunks(c.chunks, new Map([[mine.id, mine.data]]), { scope: { runId } });
    expect(await codeOf(read())).toBe('CHUNK_SCOPE_DENIED');
    expect(await codeOf(send())).toBe('CHUNK_SCOPE_DENIED');
    expect(
      await codeOf(c.channel.bulk!.put(mine.id, mine.data, undefined, { 'pollen-chunk-run': runId })),
    ).toBe('CHUNK_SCOPE_DENIED');
    const unscoped = () => downloadChunks(c.chunks, [global.id], new MemoryChunkStore());
    expect(await codeOf(unscoped())).toBe('CHUNK_MISSING');
    await instruct(c.nodeId);
    expect((await read()).received).toBe(1);
    // A client that names no run (older SuperNodes, plain gRPC) finds its runs' chunks too.
    expect((await unscoped()).received).toBe(1);
    expect(
      (await downloadChunks(rpcChunkTransport(c.fleet), [global.id], new MemoryChunkStore())).received,
    ).toBe(1);
    expect((await send()).sent).toBe(1);
    // A node never reads another node's uploads, even as a participant.
    expect(
      await codeOf(downloadChunks(b.chunks, [mine.id], new MemoryChunkStore(), { scope: { runId } })),
    ).toBe('CHUNK_MISSING');
  });

  it('accepts a reply whose chunks the node uploaded, refuses one naming chunks it did not', async () => {
    const content = () =>
      new RecordDict({ model: ArrayRecord.fromArrays({ w: new Float32Array(100_000).fill(1.5) }) });
    const replyFrom = async (node: string) => {
      const instructionId = await instruct(node);
      return messageToWire(
        Message.create({
          content: content(),
          dstNodeId: '0',
          messageType: 'train',
          runId,
          ttlSeconds: 60,
        }).withMetadata({
          srcNodeId: node,
          replyToMessageId: instructionId,
          messageId: `reply-${randomBytes(4).toString('hex')}`,
        }),
      );
    };
    const fromA = await replyFrom(a.nodeId);
    await uploadChunks(a.chunks, fromA.chunks, { scope: { runId } });
    expect((await l.superlink.link.pushReply(a.nodeId, fromA.wire)).errorCode ?? '').toBe('');
    // Node B's reply names the same ids (same content) without uploading them: A's scope is not B's.
    const fromB = await replyFrom(b.nodeId);
    expect([...fromB.chunks.keys()]).toEqual([...fromA.chunks.keys()]);
    expect((await l.superlink.link.pushReply(b.nodeId, fromB.wire)).errorCode).toBe('CHUNK_MISSING');
  });

  it('refuses uploads for a run that is not running and for runs it does not know', async () => {
    const c = chunk(1000);
    const other = await pendingRun(l.superlink.state, 'chunks');
    expect(await codeOf(uploadChunks(a.chunks, new Map([[c.id, c.data]]), { scope: { runId: other } }))).toBe(
      'RUN_NOT_RUNNING',
    );
    expect(
      await codeOf(uploadChunks(a.chunks, new Map([[c.id, c.data]]), { scope: { runId: 'nosuchrun' } })),
    ).toBe('RUN_NOT_FOUND');
    expect(
      await codeOf(uploadChunks(a.chunks, new Map([[c.id, c.data]]), { scope: { runId: '../etc' } })),
    ).toBe('INVALID_ARGUMENT');
  });

  it('refuses node uploads that name no run (the shared store is not theirs); nodes still read it', async () => {
    const c = chunk();
    // Refused before the body (HTTP/1.1 closes that connection), on the bulk lane and the RPC.
    expect(await codeOf(a.channel.bulk!.put(c.id, c.data))).toBe('CHUNK_RUN_REQUIRED');
    expect(await codeOf(uploadChunks(rpcChunkTransport(a.fleet), new Map([[c.id, c.data]])))).toBe(
      'CHUNK_RUN_REQUIRED',
    );
    expect(await l.superlink.link.chunks.has(c.id)).toBe(false);
    const big = randomBytes(5 * 1024 * 1024);
    expect(await codeOf(a.channel.bulk!.put(sha(big), big, undefined, { 'pollen-chunk-run': runId }))).toBe(
      'CHUNK_TOO_LARGE',
    );
    const pushBig = a.fleet.pushChunks(
      (async function* () {
        yield { id: sha(big), data: big };
      })(),
      { headers: { 'pollen-chunk-run': runId } },
    );
    expect(await codeOf(pushBig.catch((e) => Promise.reject(fromConnectError(e))))).toBe('CHUNK_TOO_LARGE');
    // What admins put there (app bundles) a node reads without naming a run; the lane still works.
    await l.superlink.link.chunks.put(c.id, c.data);
    expect(Buffer.from(await a.channel.bulk!.get(c.id))).toEqual(Buffer.from(c.data));
    await a.channel.bulk!.put(c.id, c.data, undefined, { 'pollen-chunk-run': runId });
    // The Connect RPC path takes the same scopes as the bulk lane.
    const d = chunk(5000);
    const r = await uploadChunks(rpcChunkTransport(a.fleet), new Map([[d.id, d.data]]), { scope: { runId } });
    expect(r.sent).toBe(1);
    const got = new MemoryChunkStore();
    await downloadChunks(rpcChunkTransport(app), [d.id], got, { scope: { runId, sourceNodeId: a.nodeId } });
    expect(await got.has(d.id)).toBe(true);
  });

  it('gives the ServerApp each node’s reply, and one node’s bad chunks spoil only its reply', async () => {
    const grid = new RemoteGrid(app, appChunks, runId);
    const replyFrom = async (node: string, value: number) => {
      const instructionId = await instruct(node);
      const w = messageToWire(
        Message.create({
          content: new RecordDict({
            model: ArrayRecord.fromArrays({ w: new Float32Array(50_000).fill(value) }),
          }),
          dstNodeId: '0',
          messageType: 'train',
          runId,
          ttlSeconds: 60,
        }).withMetadata({ srcNodeId: node, replyToMessageId: instructionId, messageId: `reply-${node}` }),
      );
      return { instructionId, ...w };
    };
    const good = await replyFrom(a.nodeId, 2);
    await uploadChunks(a.chunks, good.chunks, { scope: { runId } });
    // Different content (the same would be served from A's verified copy, which is correct).
    const bad = await replyFrom(b.nodeId, 3);
    for (const id of bad.chunks.keys())
      await b.channel.bulk!.put(id, randomBytes(200_000), undefined, { 'pollen-chunk-run': runId });
    expect((await l.superlink.link.pushReply(a.nodeId, good.wire)).errorCode ?? '').toBe('');
    expect((await l.superlink.link.pushReply(b.nodeId, bad.wire)).errorCode ?? '').toBe('');
    const replies = await grid.pull([good.instructionId, bad.instructionId]);
    const bySource = new Map(replies.map((m) => [m.metadata.srcNodeId, m]));
    expect(bySource.get(b.nodeId)?.error?.code).toBe('CHUNK_MISMATCH');
    const fromA = bySource.get(a.nodeId)!;
    expect(fromA.hasError()).toBe(false);
    const arrays = fromA.content!.arrayRecords.get('model')!;
    expect(Array.from(arrays.get('w', 'float32')!.data.slice(0, 3))).toEqual([2, 2, 2]);
  });

  it('receives replies into the kernel memory when sendAndReceive asks for it (kernelMemory), else not', async () => {
    const grid = new RemoteGrid(app, appChunks, runId);
    // Node A answers the next instruction it pulls with 300,000 floats (1.2 MB) of `value`.
    const answer = async (value: number) => {
      const [instruction] = await l.superlink.link.pullInstructions(a.nodeId, 1, 10_000);
      const reply = Message.create({
        content: new RecordDict({
          model: ArrayRecord.fromArrays({ w: new Float32Array(300_000).fill(value) }),
        }),
        dstNodeId: '0',
        messageType: 'train',
        runId,
        ttlSeconds: 60,
      }).withMetadata({
        srcNodeId: a.nodeId,
        replyToMessageId: instruction?.metadata?.messageId ?? '',
        messageId: `kernel-reply-${value}`,
      });
      const w = messageToWire(reply);
      await uploadChunks(a.chunks, w.chunks, { scope: { runId } });
      expect((await l.superlink.link.pushReply(a.nodeId, w.wire)).errorCode ?? '').toBe('');
    };
    const ask = async (value: number, kernelMemory: boolean) => {
      const instruction = Message.create({
        content: new RecordDict({}),
        dstNodeId: a.nodeId,
        messageType: 'train',
        ttlSeconds: 60,
      });
      const [replies] = await Promise.all([
        grid.sendAndReceive([instruction], { kernelMemory, timeoutMs: 20_000 }),
        answer(value),
      ]);
      expect(replies).toHaveLength(1);
      return replies[0]?.content?.arrayRecords.get('model')?.get('w', 'float32')?.data as Float32Array;
    };
    const inKernel = await ask(5, true);
    expect(inKernelMemory(inKernel)).toBe(true);
    expect(inKernel.length === 300_000 && inKernel.every((x) => x === 5)).toBe(true);
    const plain = await ask(6, false);
    expect(inKernelMemory(plain)).toBe(false);
    expect(plain.length === 300_000 && plain.every((x) => x === 6)).toBe(true);
  });

  it('drops a finished run’s chunks', async () => {
    const c = chunk();
    await uploadChunks(a.chunks, new Map([[c.id, c.data]]), { scope: { runId } });
    expect(l.superlink.link.relay.stats().chunks).toBeGreaterThan(0);
    await l.superlink.link.runFinished(runId);
    expect(l.superlink.link.relay.stats()).toMatchObject({ chunks: 0, memoryBytes: 0, onDisk: 0 });
  });
});
