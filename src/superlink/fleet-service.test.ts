/**
 * The Fleet API's handlers in memory (Connect's router transport, test/support/memory-link.ts):
 * the same pipeline, authentication and rate limit as the SuperLink's server, a Link over SQLite,
 * and a ManualClock for every wait, expiry and refill. The wire (HTTP/2, TLS, the fast gRPC path,
 * the bulk chunk lane) is tested in fleet-longpoll.test.ts and test/.
 */
import { createHash, randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it, vi } from 'vitest';
import { everyDType } from '../../test/support/dtypes.js';
import { ACTIVATE_REQUEST, signActivation } from '../../test/support/fleet-client.js';
import { type MemoryLink, memoryLinks } from '../../test/support/memory-link.js';
import {
  FabSchema,
  type ArrayRecord as WireArrays,
  type RecordDict as WireRecords,
} from '../gen/pollen/v1/records_pb.js';
import { Message } from '../sdk/message.js';
import { RecordDict } from '../sdk/records.js';
import type { SessionHolder } from '../supernode/fleet-auth.js';
import { rpcChunkTransport } from '../transport/chunk-rpc.js';
import { downloadChunks, uploadChunks } from '../transport/chunk-transfer.js';
import { MemoryChunkStore } from '../transport/chunks.js';
import { fromConnectError } from '../transport/errors.js';
import { messageToWire } from '../transport/wire.js';
import { MAX_INSTRUCTION_WAIT_MS } from './link.js';
import { nodeIdFromIdentity } from './node-identity.js';

const start = memoryLinks('fleet-service');

/** The Pollen code a call fails with ('ok' if it does not). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return fromConnectError(e).code;
  }
}

/** The Pollen code and the Connect code of a refusal. */
async function refusal(p: Promise<unknown>): Promise<{ code: string; connect: string }> {
  try {
    await p;
  } catch (e) {
    return { code: fromConnectError(e).code, connect: Code[ConnectError.from(e).code] };
  }
  throw new Error('the call was not refused');
}

/** A reply of `nodeId` to instruction `replyTo` of `runId`. */
function reply(
  runId: string,
  nodeId: string,
  replyTo: string,
  messageId = `r-${randomBytes(4).toString('hex')}`,
  content = new RecordDict(),
) {
  return messageToWire(
    Message.create({
      content,
      dstNodeId: '0',
      messageType: 'train',
      runId,
      ttlSeconds: 60,
    }).withMetadata({ srcNodeId: nodeId, replyToMessageId: replyTo, messageId }),
  ).wire;
}

const sha = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');
const chunk = (n = 1000) => {
  const data = randomBytes(n);
  return { id: sha(data), data };
};

/** Resolves once `n` PullMessages of `nodeId` wait on the Link. */
const waiting = (l: MemoryLink, nodeId: string, n = 1) =>
  vi.waitFor(() => expect(l.link.instructions.count(nodeId)).toBe(n));

describe('ActivateNode', () => {
  it('names the node by its certificate, whatever the request says, and clamps the heartbeat interval', async () => {
    const l = await start();
    const peer = l.peer('site-1');
    const fleet = l.fleet({ peer });
    const res = await fleet.activateNode({
      name: 'someone-else',
      heartbeatIntervalMs: 50,
      instanceId: 'x'.repeat(100),
    });
    expect(res.nodeId).toBe(nodeIdFromIdentity(peer));
    expect(res.heartbeatIntervalMs).toBe(1_000);
    expect(res.session).toBeUndefined();
    expect(l.state.getNode(res.nodeId)).toMatchObject({
      name: 'site-1',
      status: 'online',
      certFingerprint: peer.fingerprint,
      lastSeenAt: l.clock.now(),
    });
    expect((await fleet.activateNode({ heartbeatIntervalMs: 0 })).heartbeatIntervalMs).toBe(10_000);
    expect((await fleet.activateNode({ heartbeatIntervalMs: 86_400_000 })).heartbeatIntervalMs).toBe(300_000);
    expect(l.logs).toContainEqual(
      expect.objectContaining({ msg: 'node activated', nodeId: res.nodeId, name: 'site-1' }),
    );
  });

  it('refuses a caller without a client certificate, with another type, or of another project', async () => {
    const l = await start();
    expect(await refusal(l.fleet({}).activateNode({}))).toEqual({
      code: 'UNAUTHENTICATED',
      connect: 'Unauthenticated',
    });
    expect(await refusal(l.fleet({ peer: l.peer('root', { type: 'admin' }) }).activateNode({}))).toEqual({
      code: 'PERMISSION_DENIED',
      connect: 'PermissionDenied',
    });
    const stranger = l.fleet({ peer: l.peer('site-1', { project: 'other' }) });
    expect(await codeOf(stranger.activateNode({}))).toBe('PERMISSION_DENIED');
    // Every other call meets the same check before its handler.
    expect(await codeOf(l.fleet({}).heartbeat({}))).toBe('UNAUTHENTICATED');
    expect(await codeOf(stranger.pullMessages({}))).toBe('PERMISSION_DENIED');
    expect(await l.state.listNodes()).toEqual([]);
  });

  it('in insecure mode takes the name a node sends, and refuses one that sends none or a bad one', async () => {
    const l = await start({ insecure: true });
    expect(await codeOf(l.fleet({}).activateNode({ name: 'dev' }))).toBe('UNAUTHENTICATED');
    expect(await codeOf(l.fleet({ insecureName: 'no spaces' }).activateNode({}))).toBe('UNAUTHENTICATED');
    const fleet = l.fleet({ insecureName: 'dev' });
    const { nodeId } = await fleet.activateNode({ name: 'dev-box' });
    expect(nodeId).toBe(nodeIdFromIdentity({ project: 'insecure', type: 'client', name: 'dev' }));
    expect(l.state.getNode(nodeId)).toMatchObject({ name: 'dev-box', status: 'online' });
  });
});

describe('Heartbeat and DeactivateNode', () => {
  it('keep a node online while it beats; it goes offline when the beats lapse, and its instruction is answered NODE_UNAVAILABLE', async () => {
    const l = await start();
    const steady = await l.node('steady');
    const lapsing = await l.node('lapsing');
    const runId = await l.runningRun();
    const mine = await l.instruct(runId, steady.nodeId);
    const theirs = await l.instruct(runId, lapsing.nodeId);
    await steady.fleet.pullMessages({});
    await lapsing.fleet.pullMessages({});
    // Online until two intervals (10 s) and a grace (5 s) pass without a heartbeat.
    for (let t = 0; t < 3; t++) {
      await l.clock.advance(10_000);
      expect(await steady.fleet.heartbeat({ heartbeatIntervalMs: 10_000 })).toMatchObject({ known: true });
    }
    expect(l.state.getNode(steady.nodeId)?.status).toBe('online');
    expect(l.state.getNode(lapsing.nodeId)?.status).toBe('offline');
    const replies = await l.link.pullReplies(runId, [mine, theirs], 0);
    expect(replies.map((m) => [m.metadata?.replyToMessageId, m.body.case, m.body.value])).toEqual([
      [theirs, 'error', expect.objectContaining({ code: 'NODE_UNAVAILABLE' })],
    ]);
  });

  it('answer which of the named runs finished (or are unknown) only when runs are named', async () => {
    const l = await start();
    const { fleet } = await l.node('site-1');
    const running = await l.runningRun();
    const done = await l.runningRun();
    await l.launcher.finish(done, 'completed');
    expect(await fleet.heartbeat({ heartbeatIntervalMs: 10_000 })).toMatchObject({
      known: true,
      runsChecked: false,
      finishedRunIds: [],
    });
    expect(await fleet.heartbeat({ runIds: [running, done, 'feedfacefeedface'] })).toMatchObject({
      known: true,
      runsChecked: true,
      finishedRunIds: [done, 'feedfacefeedface'],
    });
  });

  it('DeactivateNode takes the node offline at once, wakes its waiting poll, and later beats are not known', async () => {
    const l = await start();
    const { fleet, nodeId } = await l.node('site-1');
    const pulled = fleet.pullMessages({ waitMs: 20_000 });
    await waiting(l, nodeId);
    await fleet.deactivateNode({});
    expect((await pulled).messages).toEqual([]);
    // Woken, not timed out: no time passed and its sleep is gone.
    expect(l.clock.sleeping).toBe(0);
    expect(l.state.getNode(nodeId)?.status).toBe('offline');
    expect(await fleet.heartbeat({})).toMatchObject({ known: false, runsChecked: false });
    // A heartbeat of a node that never activated is not known either.
    expect(await l.fleet({ peer: l.peer('stranger') }).heartbeat({})).toMatchObject({ known: false });
  });
});

describe('PullMessages', () => {
  it('answers queued instructions of the calling node only, oldest first, up to max_messages, each once', async () => {
    const l = await start();
    const a = await l.node('site-a');
    const b = await l.node('site-b');
    const runId = await l.runningRun();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await l.instruct(runId, a.nodeId));
      await l.clock.advance(1);
    }
    const forB = await l.instruct(runId, b.nodeId);
    const first = await a.fleet.pullMessages({ maxMessages: 2 });
    expect(first.messages.map((m) => m.metadata?.messageId)).toEqual(ids.slice(0, 2));
    expect(first.messages[0]).toMatchObject({
      metadata: { runId, srcNodeId: '0', dstNodeId: a.nodeId, messageType: 'train' },
      body: { case: 'content' },
    });
    expect(
      (await a.fleet.pullMessages({ maxMessages: 2 })).messages.map((m) => m.metadata?.messageId),
    ).toEqual([ids[2]]);
    expect((await a.fleet.pullMessages({})).messages).toEqual([]);
    expect((await b.fleet.pullMessages({})).messages.map((m) => m.metadata?.messageId)).toEqual([forB]);
  });

  it('gives JSON clients the same messages as binary ones', async () => {
    const l = await start();
    const { nodeId, peer } = await l.node('site-1');
    const runId = await l.runningRun();
    const id = await l.instruct(runId, nodeId);
    const { messages } = await l.fleet({ peer, json: true }).pullMessages({});
    expect(messages.map((m) => m.metadata?.messageId)).toEqual([id]);
    expect(messages[0]!.body.case).toBe('content');
  });

  it('waits (wait_ms) on the clock: an instruction pushed meanwhile is answered at once, else it answers empty when the wait ends', async () => {
    const l = await start();
    const { fleet, nodeId } = await l.node('site-1');
    const runId = await l.runningRun();
    let answered = false;
    const pulled = fleet.pullMessages({ waitMs: 20_000 }).finally(() => {
      answered = true;
    });
    await waiting(l, nodeId);
    await l.clock.advance(19_999);
    expect(answered).toBe(false);
    const id = await l.instruct(runId, nodeId);
    expect((await pulled).messages.map((m) => m.metadata?.messageId)).toEqual([id]);

    const empty = fleet.pullMessages({ waitMs: 20_000 });
    await waiting(l, nodeId);
    const t0 = l.clock.now();
    await l.clock.advance(20_000);
    expect((await empty).messages).toEqual([]);
    expect(l.clock.now() - t0).toBe(20_000);
    expect(l.link.instructions.count(nodeId)).toBe(0);
  });

  it('caps a wait at 30 s, answers wait_ms 0 at once, and ends the wait when the caller goes away', async () => {
    const l = await start();
    const { fleet, nodeId } = await l.node('site-1');
    expect((await fleet.pullMessages({ waitMs: 0 })).messages).toEqual([]);
    let answered = false;
    const capped = fleet.pullMessages({ waitMs: 10 * 60_000 }).finally(() => {
      answered = true;
    });
    await waiting(l, nodeId);
    await l.clock.advance(MAX_INSTRUCTION_WAIT_MS - 1);
    expect(answered).toBe(false);
    await l.clock.advance(1);
    expect((await capped).messages).toEqual([]);

    const ac = new AbortController();
    const aborted = fleet.pullMessages({ waitMs: 20_000 }, { signal: ac.signal });
    await waiting(l, nodeId);
    ac.abort();
    expect(await codeOf(aborted)).toBe('UNAVAILABLE');
    await vi.waitFor(() => expect(l.link.instructions.count(nodeId)).toBe(0));
    expect(l.clock.sleeping).toBe(0);
    // What the handler got from the Link: an empty answer, at once.
    const gone = new AbortController();
    const direct = l.link.pullInstructions(nodeId, 4, 20_000, gone.signal);
    await waiting(l, nodeId);
    gone.abort();
    expect(await direct).toEqual([]);
    expect(l.clock.sleeping).toBe(0);
  });
});

describe('PushMessages', () => {
  it('stores a reply as the calling node, whatever source it names, for the ServerApp to read', async () => {
    const l = await start();
    const a = await l.node('site-a');
    const runId = await l.runningRun();
    const id = await l.instruct(runId, a.nodeId);
    await a.fleet.pullMessages({});
    const r = reply(runId, 'someone-else', id, 'reply-1');
    const { results } = await a.fleet.pushMessages({ messages: [r] });
    expect(results).toEqual([expect.objectContaining({ messageId: 'reply-1', errorCode: '' })]);
    const [stored] = await l.link.pullReplies(runId, [id], 0);
    expect(stored?.metadata).toMatchObject({ srcNodeId: a.nodeId, dstNodeId: '0', replyToMessageId: id });
  });

  it('answers per message: unknown, foreign, duplicate, expired and malformed replies are refused, the rest stored', async () => {
    const l = await start();
    const a = await l.node('site-a');
    const b = await l.node('site-b');
    const runId = await l.runningRun();
    const own = await l.instruct(runId, a.nodeId);
    const later = await l.instruct(runId, a.nodeId);
    const foreign = await l.instruct(runId, b.nodeId);
    const noType = reply(runId, a.nodeId, own);
    noType.metadata!.messageType = 'gossip';
    const noReplyTo = reply(runId, a.nodeId, '');
    const noMetadata = reply(runId, a.nodeId, own);
    noMetadata.metadata = undefined;
    const { results } = await a.fleet.pushMessages({
      messages: [
        reply(runId, a.nodeId, 'no-such-instruction'),
        reply(runId, a.nodeId, foreign),
        noType,
        noReplyTo,
        noMetadata,
        reply(runId, a.nodeId, own),
      ],
    });
    expect(results.map((r) => r.errorCode)).toEqual([
      'MESSAGE_NOT_FOR_NODE',
      'MESSAGE_NOT_FOR_NODE',
      'MESSAGE_INVALID',
      'MESSAGE_INVALID',
      'MESSAGE_INVALID',
      '',
    ]);
    expect(results[1]!.errorMessage).toBe(
      `Message ${foreign} is not an open instruction for node ${a.nodeId}`,
    );
    // A's reply did not answer B's instruction: it is still open, for B.
    expect(await l.link.pullReplies(runId, [foreign], 0)).toEqual([]);
    // The instruction is answered now; the other one expires after its minute.
    expect(
      (await a.fleet.pushMessages({ messages: [reply(runId, a.nodeId, own)] })).results[0]!.errorCode,
    ).toBe('REPLY_DUPLICATE');
    await l.clock.advance(60_000);
    expect(
      (await a.fleet.pushMessages({ messages: [reply(runId, a.nodeId, later)] })).results[0]!.errorCode,
    ).toBe('MESSAGE_EXPIRED');
  });

  it('takes arrays of every dtype in a reply, and refuses an unknown dtype or one whose bytes do not add up', async () => {
    const l = await start();
    const a = await l.node('site-a');
    const runId = await l.runningRun();
    const ids = [await l.instruct(runId, a.nodeId), await l.instruct(runId, a.nodeId)];
    await a.fleet.pullMessages({ maxMessages: 2 });
    const every = reply(runId, a.nodeId, ids[0]!, 'every', new RecordDict({ arrays: everyDType() }));
    const arraysOf = (m: typeof every) =>
      ((m.body.value as WireRecords).records[0]!.record.value as WireArrays).arrays;
    const unknown = reply(runId, a.nodeId, ids[1]!, 'unknown', new RecordDict({ arrays: everyDType() }));
    arraysOf(unknown)[0]!.dtype = 'complex64';
    const short = reply(runId, a.nodeId, ids[1]!, 'short', new RecordDict({ arrays: everyDType() }));
    arraysOf(short).find((x) => x.dtype === 'uint64')!.nbytes -= 1n;
    const { results } = await a.fleet.pushMessages({ messages: [every, unknown, short] });
    expect(results.map((r) => [r.errorCode, r.errorMessage])).toEqual([
      ['', ''],
      ['RECORD_INVALID', 'Array "float16/matrix" in record "arrays": unknown dtype'],
      [
        'RECORD_INVALID',
        'Array "uint64/matrix" in record "arrays": shape and dtype give 64 bytes, nbytes says 63',
      ],
    ]);
    const [stored] = await l.link.pullReplies(runId, [ids[0]!], 0);
    expect(arraysOf(stored!).map((x) => x.dtype)).toEqual(arraysOf(every).map((x) => x.dtype));
  });

  it('answers a reply that comes after its run was stopped RUN_NOT_RUNNING, naming how the run ended', async () => {
    const l = await start();
    const a = await l.node('site-a');
    const runId = await l.runningRun();
    const id = await l.instruct(runId, a.nodeId);
    await a.fleet.pullMessages({});
    await l.launcher.finish(runId, 'stopped', 'stopped by admin@example.com');
    const { results } = await a.fleet.pushMessages({ messages: [reply(runId, a.nodeId, id)] });
    expect(results[0]).toMatchObject({
      errorCode: 'RUN_NOT_RUNNING',
      errorMessage: `Run ${runId} is finished (stopped), not running`,
    });
    // A run that is still running keeps the precise refusal for a reply to nothing of ours.
    const running = await l.runningRun();
    const other = await a.fleet.pushMessages({ messages: [reply(running, a.nodeId, 'no-such-instruction')] });
    expect(other.results[0]!.errorCode).toBe('MESSAGE_NOT_FOR_NODE');
  });

  it('refuses more than 256 messages in one call with MESSAGE_INVALID, storing none', async () => {
    const l = await start();
    const a = await l.node('site-a');
    const runId = await l.runningRun();
    const id = await l.instruct(runId, a.nodeId);
    const messages = Array.from({ length: 257 }, () => reply(runId, a.nodeId, id));
    expect(await refusal(a.fleet.pushMessages({ messages }))).toEqual({
      code: 'MESSAGE_INVALID',
      connect: 'InvalidArgument',
    });
    expect(await l.link.pullReplies(runId, [id], 0)).toEqual([]);
    expect((await a.fleet.pushMessages({ messages: messages.slice(0, 1) })).results[0]!.errorCode).toBe('');
  });

  it('refuses replies past the node’s unread queue with REPLY_QUEUE_FULL', async () => {
    const l = await start({ limits: { nodeReplyQueue: 2 } });
    const a = await l.node('site-a');
    const runId = await l.runningRun();
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await l.instruct(runId, a.nodeId));
    const { results } = await a.fleet.pushMessages({ messages: ids.map((id) => reply(runId, a.nodeId, id)) });
    expect(results.map((r) => r.errorCode)).toEqual(['', '', 'REPLY_QUEUE_FULL']);
  });
});

describe('GetRun and GetFab', () => {
  it('GetRun answers a run, RUN_NOT_FOUND for none, and shares an answer for a second of the clock', async () => {
    const l = await start();
    const { fleet } = await l.node('site-1');
    const runId = await l.runningRun();
    expect((await fleet.getRun({ runId })).run).toMatchObject({ runId, status: 'running' });
    expect(await refusal(fleet.getRun({ runId: 'feedfacefeedface' }))).toEqual({
      code: 'RUN_NOT_FOUND',
      connect: 'NotFound',
    });
    await l.launcher.finish(runId, 'stopped', 'by test');
    expect((await fleet.getRun({ runId })).run?.status).toBe('running');
    await l.clock.advance(1_000);
    expect((await fleet.getRun({ runId })).run).toMatchObject({ status: 'finished', subStatus: 'stopped' });
    expect(await codeOf(l.fleet({}).getRun({ runId }))).toBe('UNAUTHENTICATED');
  });

  it('GetFab answers a registered bundle, BUNDLE_NOT_FOUND for another hash or a malformed one', async () => {
    const l = await start();
    const { fleet } = await l.node('site-1');
    const c = chunk();
    await l.link.chunks.put(c.id, c.data);
    const hash = `sha256:${c.id}`;
    await l.link.fabs.register(
      create(FabSchema, {
        hash,
        size: BigInt(c.data.byteLength),
        chunkIds: [c.id],
        name: 'app',
        version: '1.0.0',
      }),
    );
    expect((await fleet.getFab({ hash })).fab).toMatchObject({
      hash,
      chunkIds: [c.id],
      name: 'app',
      version: '1.0.0',
    });
    expect(await codeOf(fleet.getFab({ hash: `sha256:${'0'.repeat(64)}` }))).toBe('BUNDLE_NOT_FOUND');
    expect(await codeOf(fleet.getFab({ hash: '../../etc/passwd' }))).toBe('BUNDLE_NOT_FOUND');
  });
});

describe('chunk RPCs', () => {
  it('refuse node uploads that name no run (CHUNK_RUN_REQUIRED), for runs not running, unknown, misnamed, or that sent the node nothing', async () => {
    const l = await start();
    const a = await l.node('site-a');
    const runId = await l.runningRun();
    const c = chunk();
    const upload = (scope?: { runId: string }) =>
      codeOf(uploadChunks(rpcChunkTransport(a.fleet), new Map([[c.id, c.data]]), scope ? { scope } : {}));
    expect(await upload()).toBe('CHUNK_RUN_REQUIRED');
    expect(await upload({ runId })).toBe('CHUNK_SCOPE_DENIED');
    expect(await upload({ runId: 'feedfacefeedface' })).toBe('RUN_NOT_FOUND');
    expect(await upload({ runId: '../etc' })).toBe('INVALID_ARGUMENT');
    const pending = await l.state.createRun({
      fabHash: `sha256:${'0'.repeat(64)}`,
      fabName: 'x',
      fabVersion: '1',
      runConfig: {},
      federation: 'default',
      createdBy: 'test',
    });
    expect(await upload({ runId: pending.runId })).toBe('RUN_NOT_RUNNING');
    expect(await l.link.chunks.has(c.id)).toBe(false);
    await l.instruct(runId, a.nodeId);
    expect(
      (await uploadChunks(rpcChunkTransport(a.fleet), new Map([[c.id, c.data]]), { scope: { runId } })).sent,
    ).toBe(1);
    expect(l.link.relay.heldBy(runId, a.nodeId)).toBe(c.data.byteLength);
  });

  it('let a node read the shared store and, once sent work, its run’s ServerApp chunks; never another node’s', async () => {
    const l = await start();
    const a = await l.node('site-a');
    const b = await l.node('site-b');
    const runId = await l.runningRun();
    const shared = chunk();
    await l.link.chunks.put(shared.id, shared.data);
    const model = chunk();
    await l.link.appUploads(runId).put(model.id, model.data);
    const read = (n: typeof a, id: string, scope?: { runId: string }) =>
      codeOf(
        downloadChunks(rpcChunkTransport(n.fleet), [id], new MemoryChunkStore(), scope ? { scope } : {}),
      );
    expect(await read(a, shared.id)).toBe('ok');
    expect(await read(a, model.id, { runId })).toBe('CHUNK_SCOPE_DENIED');
    expect(await read(a, model.id)).toBe('CHUNK_MISSING');
    await l.instruct(runId, a.nodeId);
    await l.instruct(runId, b.nodeId);
    expect(await read(a, model.id, { runId })).toBe('ok');
    expect(await read(a, model.id)).toBe('ok');
    const mine = chunk();
    await uploadChunks(rpcChunkTransport(a.fleet), new Map([[mine.id, mine.data]]), { scope: { runId } });
    expect(await read(b, mine.id, { runId })).toBe('CHUNK_MISSING');
    expect(await rpcChunkTransport(b.fleet).missing([mine.id, model.id], { scope: { runId } })).toEqual([
      mine.id,
    ]);
  });

  it('refuse a node past its quota in a run (CHUNK_QUOTA_EXCEEDED), past the disk budget (STORAGE_FULL), and a chunk over 4 MiB', async () => {
    const KiB = 1024;
    const l = await start({
      limits: { nodeChunkQuotaBytes: 64 * KiB, chunkDiskBudgetBytes: 96 * KiB },
      chunkMemoryBytes: 0,
    });
    const a = await l.node('site-a');
    const b = await l.node('site-b');
    const runId = await l.runningRun();
    await l.instruct(runId, a.nodeId);
    await l.instruct(runId, b.nodeId);
    const put = (n: typeof a, c: ReturnType<typeof chunk>) =>
      codeOf(uploadChunks(rpcChunkTransport(n.fleet), new Map([[c.id, c.data]]), { scope: { runId } }));
    for (let i = 0; i < 2; i++) expect(await put(a, chunk(32 * KiB))).toBe('ok');
    expect(await put(a, chunk(32 * KiB))).toBe('CHUNK_QUOTA_EXCEEDED');
    expect(l.link.relay.heldBy(runId, a.nodeId)).toBe(64 * KiB);
    expect(await put(b, chunk(32 * KiB))).toBe('ok');
    expect(await put(b, chunk(32 * KiB))).toBe('STORAGE_FULL');
    expect(l.link.relay.heldBy(runId, b.nodeId)).toBe(32 * KiB);
    expect(await put(b, chunk(4 * 1024 * KiB + 1))).toBe('CHUNK_TOO_LARGE');
  });
});

describe('the request rate', () => {
  it('refuses a node past its rate with RATE_LIMITED until the clock refills its bucket; other nodes are served', async () => {
    const l = await start({ limits: { nodeRatePerSecond: 1, nodeBurst: 3 } });
    const a = await l.node('site-a'); // one of its three
    const b = await l.node('site-b');
    await a.fleet.heartbeat({});
    await a.fleet.heartbeat({});
    const refused = await a.fleet.heartbeat({}).catch((e) => fromConnectError(e));
    expect(refused).toMatchObject({
      code: 'RATE_LIMITED',
      message: expect.stringMatching(/more than 1 requests per second \(bursts of 3\); retry in 1000 ms/),
      // The wait crosses the wire, for the node to follow.
      data: { retryAfterMs: 1000 },
    });
    expect(await refusal(a.fleet.getRun({ runId: 'x' }))).toEqual({
      code: 'RATE_LIMITED',
      connect: 'ResourceExhausted',
    });
    expect(await b.fleet.heartbeat({})).toMatchObject({ known: true });
    await l.clock.advance(999);
    expect(await codeOf(a.fleet.heartbeat({}))).toBe('RATE_LIMITED');
    await l.clock.advance(1);
    expect(await a.fleet.heartbeat({})).toMatchObject({ known: true });
    expect(l.link.rate.refused).toBe(3);
  });
});

describe('node-key sessions', () => {
  /** A registered key (bound to `site` if given) and a Fleet client of `peer` that signs with it. */
  async function keyed(l: MemoryLink, peerName: string, site?: string) {
    const key = l.nodeKey();
    await l.state.registerNodeKey({
      nodeId: key.nodeId,
      publicKey: key.publicKey,
      name: 'n',
      site,
      by: 'root',
    });
    const holder: SessionHolder = {};
    const fleet = l.fleet({ peer: l.peer(peerName), signer: key.signer, holder });
    return { ...key, holder, fleet };
  }

  it('open with a signed ActivateNode of a registered key; later calls carry the session, which the clock expires', async () => {
    const l = await start({ nodeAuth: true, sessionTtlMs: 60_000 });
    const n = await keyed(l, 'site-1');
    const res = await n.fleet.activateNode(ACTIVATE_REQUEST);
    expect(res.nodeId).toBe(n.nodeId);
    expect(res.session).toMatchObject({ expiresAt: BigInt(l.clock.now() + 60_000) });
    // Without the session the node signs every call: only ActivateNode may be signed.
    expect(await codeOf(n.fleet.heartbeat({}))).toBe('NODE_AUTH_MISSING');
    n.holder.session = res.session;
    expect(await n.fleet.heartbeat({})).toMatchObject({ known: true });
    expect(l.state.getNode(n.nodeId)).toMatchObject({
      status: 'online',
      site: 'site-1',
      siteBoundBy: 'first-use',
    });
    await l.clock.advance(60_000);
    expect(await refusal(n.fleet.heartbeat({}))).toEqual({
      code: 'NODE_SESSION_EXPIRED',
      connect: 'Unauthenticated',
    });
    // A plain certificate client (no node key) is not admitted in node-key mode.
    expect(await codeOf(l.fleet({ peer: l.peer('site-1') }).activateNode({}))).toBe('NODE_AUTH_MISSING');
  });

  it('refuse an unregistered key, a replayed activation, and a key or session of another site', async () => {
    const l = await start({ nodeAuth: true });
    const stranger = l.nodeKey();
    const unregistered = l.fleet({ peer: l.peer('site-1'), signer: stranger.signer, holder: {} });
    expect(await codeOf(unregistered.activateNode(ACTIVATE_REQUEST))).toBe('NODE_NOT_REGISTERED');

    const n = await keyed(l, 'site-1', 'site-1');
    const captured = signActivation(n.signer);
    const replayed = l.fleet({ peer: l.peer('site-1'), headers: captured });
    expect((await replayed.activateNode(ACTIVATE_REQUEST)).nodeId).toBe(n.nodeId);
    expect(await codeOf(replayed.activateNode(ACTIVATE_REQUEST))).toBe('NODE_AUTH_REPLAY');
    // (Refused by the verifier's memory; the store's refusal after a restart: test/node-replay.test.ts.)

    const elsewhere = l.fleet({ peer: l.peer('site-2'), signer: n.signer, holder: n.holder });
    expect(await codeOf(elsewhere.activateNode(ACTIVATE_REQUEST))).toBe('NODE_IDENTITY_MISMATCH');
    n.holder.session = (await n.fleet.activateNode(ACTIVATE_REQUEST)).session;
    expect(await codeOf(elsewhere.heartbeat({}))).toBe('NODE_IDENTITY_MISMATCH');
    expect(await codeOf(elsewhere.getRun({ runId: 'none' }))).toBe('NODE_IDENTITY_MISMATCH');
    expect(await codeOf(n.fleet.getRun({ runId: 'none' }))).toBe('RUN_NOT_FOUND');
    expect(
      l.logs.filter((e) => e.event === 'node.site.mismatch').map((e) => [e.site, e.presented, e.method]),
    ).toEqual([
      ['site-1', 'site-2', '/pollen.v1.Fleet/ActivateNode'],
      ['site-1', 'site-2', '/pollen.v1.Fleet/Heartbeat'],
      ['site-1', 'site-2', '/pollen.v1.Fleet/GetRun'],
    ]);
  });
});
