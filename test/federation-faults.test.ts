/**
 * Faults in a real federation (CLI processes): a SuperNode killed mid-round, the SuperLink
 * killed mid-run and restarted on its state, and hostile or broken input sent straight to the
 * SuperLink's Fleet and ServerAppIo APIs. After each, the federation must still run the app.
 */
import { randomBytes } from 'node:crypto';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, createClient } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerAppIo } from '../src/gen/pollen/v1/appio_pb.js';
import { Fleet } from '../src/gen/pollen/v1/fleet_pb.js';
import {
  MessageSchema,
  type RecordSchema,
  type Message as WireMessage,
} from '../src/gen/pollen/v1/records_pb.js';
import { CHUNK_RUN_HEADER } from '../src/transport/bulk-protocol.js';
import { chunkId } from '../src/transport/chunks.js';
import { ERROR_CODE_HEADER, fromConnectError } from '../src/transport/errors.js';
import { openChannel, type RpcChannel } from '../src/transport/rpc-client.js';
import { refusal } from './support/errors.js';
import {
  childPids,
  completedRun,
  FEDERATION,
  type Federation,
  finishedRun,
  type RunJson,
  runDetails,
  type SuperNodeProc,
  startFederation,
  startRun,
  stopAll,
  tlsOf,
  waitFor,
} from './support/federation.js';
import { replyTo } from './support/fleet-client.js';

afterAll(async () => {
  await stopAll();
});

let fed: Federation;
let nodes: SuperNodeProc[];

beforeAll(async () => {
  fed = await startFederation('pollen-fedfault-');
  nodes = await Promise.all([0, 1, 2].map((i) => fed.addNode(`fault-site-${i}`, i)));
}, 60_000);
afterAll(async () => {
  await fed?.close();
});

/** Wait until each node runs a ClientApp it did not run before (it pulled its instruction). */
async function tasksDelivered(on: SuperNodeProc[], before: Map<SuperNodeProc, Set<number>>): Promise<void> {
  await waitFor(
    'every node to start its ClientApp',
    () => on.every((n) => childPids(n.pid).some((p) => !before.get(n)?.has(p))),
    30_000,
  );
}

const snapshot = (on: SuperNodeProc[]) => new Map(on.map((n) => [n, new Set(childPids(n.pid))]));

const ids = (on: SuperNodeProc[]) => on.map((n) => n.nodeId).sort();

/** A record `arrays` holding one array, `w`. */
const arraysRecord = (w: {
  dtype: string;
  shape: bigint[];
  nbytes: bigint;
  inline: Uint8Array;
}): MessageInitShape<typeof RecordSchema> => ({
  name: 'arrays',
  record: { case: 'arrays', value: { arrays: [{ name: 'w', ...w }] } },
});

// -----------------------------------------------------------------------------------------------

describe('a SuperNode killed mid-round', () => {
  it('with min-nodes=2 the round completes with the other two', async () => {
    const before = snapshot(nodes);
    const runId = await startRun(fed, ['num-rounds=1', 'min-nodes=2', 'sleep-ms=3000', 'round-timeout=60']);
    await tasksDelivered(nodes, before);
    const victim = nodes[2]!;
    victim.kill('SIGKILL');
    await victim.exited;

    const d = await finishedRun(fed, runId);
    expect(d.run.subStatus, d.run.reason ?? '').toBe('completed');
    expect([...d.rounds[0]!.nodes].sort()).toEqual(ids(nodes.slice(0, 2)));
    // Partitions 0 and 1 answered: (10·1 + 20·2) / 30.
    expect(d.rounds[0]!.metrics.w0).toBeCloseTo(5 / 3, 4);
    const log = await fed.query(['log', runId, FEDERATION]);
    expect(log.stdout).toContain(`node ${victim.nodeId} failed: NODE_UNAVAILABLE`);
  }, 90_000);

  it('with min-nodes=3 the run fails and says why', async () => {
    // The killed node comes back with the same identity.
    const back = await fed.addNode('fault-site-2', 2);
    expect(back.nodeId).toBe(nodes[2]!.nodeId);
    nodes[2] = back;
    await waitFor(
      'three nodes online',
      async () => (await fed.nodeList()).filter((n) => n.status === 'online').length === 3,
    );
    const before = snapshot(nodes);
    const runId = await startRun(fed, ['num-rounds=1', 'min-nodes=3', 'sleep-ms=3000', 'round-timeout=60']);
    await tasksDelivered(nodes, before);
    nodes[0]!.kill('SIGKILL');
    await nodes[0]!.exited;

    const d = await finishedRun(fed, runId);
    expect(d.run.subStatus).toBe('failed');
    expect(d.run.reason).toContain('2 replies, 3 needed');
    expect(d.rounds).toEqual([]);
    const text = await fed.query(['list', FEDERATION, '--run-id', runId]);
    expect(text.stdout).toContain('finished:failed');
    expect(text.stdout).toContain('2 replies, 3 needed');

    nodes[0] = await fed.addNode('fault-site-0', 0);
  }, 90_000);
});

// -----------------------------------------------------------------------------------------------

describe('bad input sent straight to the SuperLink', () => {
  let channel: RpcChannel;
  let fleet: ReturnType<typeof createClient<typeof Fleet>>;
  let proberId: string;
  let beat: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    channel = await fed.fleetChannel('prober', { defaultTimeoutMs: 20_000 });
    fleet = channel.client(Fleet);
  });
  afterAll(async () => {
    clearInterval(beat);
    await fleet?.deactivateNode({}).catch(() => {});
    channel?.close();
  });

  const reply = (to: WireMessage, content: NonNullable<MessageInitShape<typeof MessageSchema>['body']>) =>
    replyTo(to, proberId, content);

  /** A train reply: w (shape [size]) as float32 with the given header and bytes. */
  const arrayReply = (to: WireMessage, o: { shape: number; nbytes: number; bytes: Uint8Array }) =>
    reply(to, {
      case: 'content',
      value: {
        records: [
          arraysRecord({
            dtype: 'float32',
            shape: [BigInt(o.shape)],
            nbytes: BigInt(o.nbytes),
            inline: o.bytes,
          }),
          {
            name: 'metrics',
            record: {
              case: 'metrics',
              value: {
                entries: [
                  { key: 'num-examples', value: { case: 'scalar', value: 40 } },
                  { key: 'train-loss', value: { case: 'scalar', value: 0.25 } },
                ],
              },
            },
          },
        ],
      },
    });

  it('answers per message: a reply to no open instruction of ours is refused', async () => {
    const res = await fleet.activateNode({ heartbeatIntervalMs: 1000, name: 'prober' });
    proberId = res.nodeId;
    beat = setInterval(() => fleet.heartbeat({ heartbeatIntervalMs: 1000 }).catch(() => {}), 700);
    const fake = create(MessageSchema, {
      metadata: { runId: 'nope', messageId: 'not-an-instruction', messageType: 'train' },
      body: { case: 'content', value: { records: [] } },
    });
    const ok = reply(fake, { case: 'error', value: { code: 'X', reason: 'y' } });
    const noMeta = create(MessageSchema, { body: { case: 'content', value: { records: [] } } });
    const { results } = await fleet.pushMessages({ messages: [ok, noMeta] });
    expect(results).toHaveLength(2);
    expect(results[0]).toMatchObject({
      messageId: ok.metadata!.messageId,
      errorCode: 'MESSAGE_NOT_FOR_NODE',
    });
    expect(results[1]!.errorCode).toBe('MESSAGE_INVALID');
  }, 30_000);

  it('refuses a malformed array in a reply to a real instruction; the run goes on', async () => {
    // Four nodes online (the three SuperNodes and the prober); three replies are enough.
    const runId = await startRun(fed, ['num-rounds=2', 'min-nodes=3', 'round-timeout=60']);
    const nextInstruction = () =>
      waitFor('an instruction for the prober', async () => {
        const { messages } = await fleet.pullMessages({ maxMessages: 4 });
        return messages[0];
      });
    const first = await nextInstruction();
    expect(first.metadata!.runId).toBe(runId);
    const bytes = new Uint8Array(new Float32Array(8).fill(100).buffer);
    const bad = [
      arrayReply(first, { shape: 8, nbytes: 36, bytes }), // nbytes does not match shape × dtype
      arrayReply(first, { shape: 8, nbytes: 32, bytes: bytes.subarray(0, 16) }), // fewer bytes than nbytes
    ];
    for (const m of bad) {
      const { results } = await fleet.pushMessages({ messages: [m] });
      expect(results[0]!.errorCode, results[0]!.errorMessage).toBe('RECORD_INVALID');
    }
    // The instruction is still open: a proper reply is taken.
    const { results } = await fleet.pushMessages({
      messages: [arrayReply(first, { shape: 8, nbytes: 32, bytes })],
    });
    expect(results[0]!.errorCode).toBe('');

    // Round 2: a reply whose chunk does not fit its array passes the SuperLink's header check but
    // cannot be decoded: it counts as the prober's failure, not the round's.
    const second = await nextInstruction();
    const piece = randomBytes(100);
    await fleet.pushChunks(
      (async function* () {
        yield { id: chunkId(piece), data: piece };
      })(),
      { headers: { [CHUNK_RUN_HEADER]: runId } },
    );
    const odd = arrayReply(second, { shape: 8, nbytes: 32, bytes: new Uint8Array() });
    const arrays = odd.body.case === 'content' ? odd.body.value.records[0]!.record : undefined;
    if (arrays?.case === 'arrays') arrays.value.arrays[0]!.chunkIds = [chunkId(piece)];
    expect((await fleet.pushMessages({ messages: [odd] })).results[0]!.errorCode).toBe('');

    const d = await finishedRun(fed, runId);
    expect(d.run.subStatus, d.run.reason ?? '').toBe('completed');
    expect([...d.rounds[0]!.nodes].sort()).toEqual([...ids(nodes), proberId].sort());
    // Partitions 0, 1, 2 (10·1 + 20·2 + 30·3) and the prober's 40 examples of 100.
    const w1 = (10 + 40 + 90 + 4000) / 100;
    expect(d.rounds[0]!.metrics.w0).toBeCloseTo(w1, 3);
    expect([...d.rounds[1]!.nodes].sort()).toEqual(ids(nodes));
    expect(d.rounds[1]!.metrics.w0).toBeCloseTo(w1 + 140 / 60, 3);
    const log = await fed.query(['log', runId, FEDERATION]);
    expect(log.stdout).toContain(`round 2: node ${proberId} failed: RECORD_INVALID`);
  }, 60_000);

  it('refuses chunks that name no run', async () => {
    const data = randomBytes(1000);
    async function* one(id: string, bytes: Uint8Array) {
      yield { id, data: bytes };
    }
    // A node's chunks belong to a run: the shared store (app bundles) is not a node's to fill.
    const unscoped = await refusal(fleet.pushChunks(one(chunkId(data), data)));
    expect(fromConnectError(unscoped).code).toBe('CHUNK_RUN_REQUIRED');
    expect(unscoped.metadata.get(ERROR_CODE_HEADER)).toBe('CHUNK_RUN_REQUIRED');
    expect(unscoped.code).toBe(Code.InvalidArgument);
    // Nothing was stored (run-chunks.test.ts checks too-large chunks in a run's scope).
    const { chunkIds } = await fleet.missingChunks({ chunkIds: [chunkId(data)] });
    expect(chunkIds).toEqual([chunkId(data)]);
  }, 30_000);

  it('refuses ServerAppIo calls without the run token', async () => {
    const runs = (await fed.query(['list', FEDERATION, '--json'])).json<{ runs: RunJson[] }>().runs;
    const runId = runs.find((r) => r.subStatus === 'completed')!.runId;
    const ch = openChannel({ baseUrl: fed.link.serverAppIoUrl, defaultTimeoutMs: 10_000 });
    try {
      const io = ch.client(ServerAppIo);
      const attempts = [
        () => io.getRunInfo({}),
        () => io.getNodes({}, { headers: { 'pollen-run-id': runId } }),
        () => io.getNodes({}, { headers: { 'pollen-run-id': runId, authorization: 'Bearer not-the-token' } }),
        () =>
          io.finishRun(
            { subStatus: 'failed', reason: 'forged' },
            {
              headers: {
                'pollen-run-id': runId,
                authorization: `Bearer ${randomBytes(32).toString('base64url')}`,
              },
            },
          ),
      ];
      for (const call of attempts) {
        const e = await refusal(call());
        expect(fromConnectError(e).code).toBe('APP_TOKEN_INVALID');
        expect(e.code).toBe(Code.Unauthenticated);
      }
    } finally {
      ch.close();
    }
    expect((await runDetails(fed, runId)).run.subStatus).toBe('completed');
  }, 30_000);

  it('refuses a 40 MiB message', async () => {
    // A client that would send it (ours stops at 32 MiB before sending).
    const tls = tlsOf(await fed.pki.cert('prober'));
    const manager = new Http2SessionManager(fed.link.fleetUrl, undefined, {
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
    });
    const transport = createGrpcTransport({
      baseUrl: fed.link.fleetUrl,
      sessionManager: manager,
      readMaxBytes: 64 << 20,
      writeMaxBytes: 64 << 20,
      defaultTimeoutMs: 30_000,
    });
    try {
      const big = createClient(Fleet, transport);
      const m = create(MessageSchema, {
        metadata: { messageId: 'big', replyToMessageId: 'nothing', messageType: 'train' },
        body: {
          case: 'content',
          value: {
            records: [
              arraysRecord({
                dtype: 'uint8',
                shape: [40n << 20n],
                nbytes: 40n << 20n,
                inline: new Uint8Array(40 << 20),
              }),
            ],
          },
        },
      });
      // The server stops reading at 32 MiB and ends the call (connect-node resets the stream
      // while the client is still sending, so the client may see INTERNAL rather than the
      // RESOURCE_EXHAUSTED the server answered).
      const e = await refusal(big.pushMessages({ messages: [m] }));
      expect([Code.ResourceExhausted, Code.Internal], e.message).toContain(e.code);
      expect(e.metadata.get(ERROR_CODE_HEADER)).toBeNull();
    } finally {
      manager.abort();
    }
    // The prober's own connection still works.
    expect((await fleet.heartbeat({ heartbeatIntervalMs: 1000 })).known).toBe(true);
  }, 60_000);

  it('still runs the app after all that', async () => {
    clearInterval(beat);
    await fleet.deactivateNode({});
    expect(fed.link.alive()).toBe(true);
    const out = await completedRun(fed, ['num-rounds=1', 'min-nodes=3']);
    expect([...out.rounds[0]!.nodes].sort()).toEqual(ids(nodes));
    expect(out.rounds[0]!.metrics.w0).toBeCloseTo((10 + 40 + 90) / 60, 4);
  }, 60_000);
});

// -----------------------------------------------------------------------------------------------

describe('the SuperLink restarted mid-run', () => {
  it('fails the run it lost; nodes come back by themselves and a new run completes', async () => {
    const before = snapshot(nodes);
    const runId = await startRun(fed, ['num-rounds=3', 'sleep-ms=60000', 'round-timeout=600']);
    await tasksDelivered(nodes, before);
    expect((await runDetails(fed, runId)).run.status).toBe('running');
    const old = fed.link;
    old.kill('SIGKILL');
    await old.exited;

    const link = await fed.restartLink();
    expect(link.ports).toEqual(old.ports);
    const d = await runDetails(fed, runId);
    expect(d.run).toMatchObject({ status: 'finished', subStatus: 'failed' });
    expect(d.run.reason).toMatch(/SuperLink restarted/);

    await waitFor(
      'the nodes to be back online with the same ids',
      async () => {
        const online = (await fed.nodeList()).filter((n) => n.status === 'online').map((n) => n.nodeId);
        return ids(nodes).every((id) => online.includes(id));
      },
      45_000,
      500,
    );
    const out = await completedRun(fed, ['num-rounds=1', 'min-nodes=3']);
    expect([...out.rounds[0]!.nodes].sort()).toEqual(ids(nodes));
  }, 120_000);
});
