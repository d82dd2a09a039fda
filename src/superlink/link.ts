/**
 * The SuperLink's core: link state, the chunk store, app bundles (fab-store.ts) and the long-poll
 * waiters, shared by the Fleet, ServerAppIo and Control handlers so that each of them stays a
 * thin adapter.
 */
import { join } from 'node:path';
import { create, fromBinary, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import type { HandlerContext } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { PollenError } from '../errors.js';
import type { PushResultSchema } from '../gen/pollen/v1/fleet_pb.js';
import {
  type Fab,
  FabSchema,
  MessageSchema,
  RunSchema,
  type Message as WireMessage,
  type Run as WireRun,
} from '../gen/pollen/v1/records_pb.js';
import { MESSAGE_TYPES } from '../sdk/message.js';
import { DTYPES, isDType } from '../sdk/records.js';
import { CHUNK_RUN_HEADER } from '../transport/bulk-protocol.js';
import {
  CHUNK_SIZE,
  type ChunkStore,
  type DiskChunkStore,
  type GcResult,
  isScopeName,
} from '../transport/chunks.js';
import { errorCodeOf } from '../transport/errors.js';
import { chunkIdsOf, configToWire } from '../transport/wire.js';
import { clip, oneLine } from '../util/text.js';
import { Waiters } from '../util/waiters.js';
import type { ArtefactStore } from './artefacts.js';
import { FabStore } from './fab-store.js';
import { sessionContextKey } from './node-auth.js';
import { DEFAULT_LIMITS, type Limits, ReplyQueues } from './quotas.js';
import { RateLimiter } from './rate-limit.js';
import { type RelayChunks, SERVER_SCOPE } from './relay-chunks.js';
import type { LinkState, Run, SynthesizedErrorReply } from './state.js';

export const DEFAULT_HEARTBEAT_MS = 10_000;
/** How long pullReplies waits after the first new reply for others to arrive. */
const REPLY_LINGER_MS = 25;
/** Longest PullMessages long poll (wait_ms is capped to it). */
export const MAX_INSTRUCTION_WAIT_MS = 30_000;
const MIN_HEARTBEAT_MS = 1_000;
/** How long a GetRun answer is shared (see wireRun). */
const RUN_CACHE_MS = 1_000;
const MAX_HEARTBEAT_MS = 300_000;

/** The Link's clock: long polls, cache ages and message times read it (tests drive it). */
export interface LinkTime {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves after `ms`, or sooner (possibly rejecting) once `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Date.now and the global timers, looked up at each call (so tests that fake them are obeyed). */
const REAL_TIME: LinkTime = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    }),
};

export interface LinkOptions {
  state: LinkState;
  /** Verified, shared chunks: app bundles and uploads that name no run. */
  chunks: DiskChunkStore;
  /** Runs' chunks, relayed per run and uploader (relay-chunks.ts). */
  relay: RelayChunks;
  /** What runs' ServerApps saved (artefacts.ts). */
  artefacts: ArtefactStore;
  stateDir: string;
  log: Logger;
  nodeAuth: boolean;
  /** Per-node caps on unread replies and request rates (default DEFAULT_LIMITS). */
  limits?: Pick<Limits, 'nodeReplyQueue' | 'nodeReplyQueueBytes' | 'nodeRatePerSecond' | 'nodeBurst'>;
  /** The clock (default: Date.now and timers); LinkState takes its own `now`. */
  time?: LinkTime;
}

/** What the SuperLink's metrics are told as runs go on (superlink-metrics.ts). */
export interface RunEvents {
  round(seconds: number, participants: number): void;
  runFinished(outcome: string): void;
}

const NO_EVENTS: RunEvents = { round() {}, runFinished() {} };

export class Link {
  readonly state: LinkState;
  readonly chunks: DiskChunkStore;
  readonly relay: RelayChunks;
  readonly artefacts: ArtefactStore;
  /** The app bundles (fab-store.ts). */
  readonly fabs: FabStore;
  readonly log: Logger;
  readonly nodeAuth: boolean;
  readonly chunkLimits = { maxChunkBytes: CHUNK_SIZE, maxChunks: 1 << 20 };
  readonly time: LinkTime;
  /** ServerApps long-polling PullReplies, keyed by run id. */
  readonly replies: Waiters;
  /** SuperNodes long-polling PullMessages, keyed by node id. */
  readonly instructions: Waiters;
  /** Each node's replies not read yet by a ServerApp (quotas.ts). */
  readonly replyQueues: ReplyQueues;
  /** Each node's Fleet request rate (rate-limit.ts). */
  readonly rate: RateLimiter;
  /** Told of rounds and finished runs: the metrics, when they are on (superlink/ops.ts). */
  events: RunEvents = NO_EVENTS;
  /** When each running run last reported a round (epoch ms), for round durations. */
  readonly #lastRound = new Map<string, number>();
  /**
   * Bumped per node on every push, so a long poll that found nothing cannot miss a push that
   * landed between its query and its wait (it looks again instead of sleeping).
   */
  readonly #pushed = new Map<string, number>();
  #closing = false;
  readonly #runCache = new Map<string, { at: number; run: Promise<WireRun> }>();
  /** The nodes each run has sent instructions to: who may read the run's ServerApp chunks. */
  readonly #participants = new Map<string, Set<string>>();

  constructor(o: LinkOptions) {
    this.state = o.state;
    this.chunks = o.chunks;
    this.relay = o.relay;
    this.artefacts = o.artefacts;
    this.log = o.log;
    this.nodeAuth = o.nodeAuth;
    this.time = o.time ?? REAL_TIME;
    // A wait is a plain timer unless another clock was given.
    const waits = o.time ? { sleep: o.time.sleep } : {};
    this.replies = new Waiters(waits);
    this.instructions = new Waiters(waits);
    const limits = o.limits ?? DEFAULT_LIMITS;
    this.replyQueues = new ReplyQueues(limits);
    this.rate = new RateLimiter({
      ratePerSecond: limits.nodeRatePerSecond,
      burst: limits.nodeBurst,
      now: this.time.now,
    });
    this.fabs = new FabStore(join(o.stateDir, 'fabs'), o.chunks);
  }

  heartbeatInterval(requested: number): number {
    if (!requested) return DEFAULT_HEARTBEAT_MS;
    return Math.min(Math.max(requested, MIN_HEARTBEAT_MS), MAX_HEARTBEAT_MS);
  }

  /** The session the auth interceptor opened for an ActivateNode call (node-key mode). */
  takeNewSession(ctx: HandlerContext) {
    return ctx.values.get(sessionContextKey);
  }

  /** A node left or was removed: wake ServerApps waiting on it so they see NODE_UNAVAILABLE. */
  nodeGone(nodeId: string): void {
    this.replies.notifyAll();
    this.instructions.notify(nodeId);
  }

  /**
   * Delete shared chunks that no stored message and no app bundle references. Chunks younger
   * than `minAgeMs` stay: an admin's bundle upload waits that long for its StartRun.
   */
  async collectGarbage(minAgeMs: number): Promise<GcResult> {
    const live = await this.state.liveChunkIds();
    this.fabs.addChunkIds(live);
    return this.chunks.gc(live, { minAgeMs });
  }

  // ------------------------------------------------------------------------------------------
  // Chunk scopes (relay-chunks.ts). Without a run, readers see the verified shared store.

  /**
   * Where node `nodeId` uploads chunks for `runId`: the run must be running and have sent the
   * node an instruction (only a run's nodes add to its chunks). A node never writes the shared
   * store: what it uploads belongs to a reply of a run, and the shared store (app bundles, from
   * admins) has no per-node quota or run end that would ever release it.
   */
  async nodeUploads(nodeId: string, runId: string | undefined): Promise<ChunkStore> {
    if (runId === undefined)
      throw new PollenError(
        'CHUNK_RUN_REQUIRED',
        `A SuperNode uploads chunks only into a run's scope; name the run in the ${CHUNK_RUN_HEADER} header`,
      );
    const run = await this.wireRun(runId, true);
    if (run.status !== 'running')
      throw new PollenError('RUN_NOT_RUNNING', `Run ${runId} is ${run.status}; it takes no more chunks`);
    this.#assertParticipant(nodeId, runId);
    return this.relay.scope(runId, nodeId);
  }

  /** What MissingChunks answers node `nodeId` for an upload to `runId`: its chunks and the run's. */
  async nodeHeld(nodeId: string, runId: string | undefined): Promise<ChunkStore> {
    if (runId === undefined) return this.chunks;
    await this.nodeUploads(nodeId, runId);
    return this.relay.reader(runId, [nodeId, SERVER_SCOPE], this.chunks);
  }

  /** What node `nodeId` may read for `runId`: the run's ServerApp chunks once it was sent work. */
  nodeReads(nodeId: string, runId: string | undefined): ChunkStore {
    if (runId === undefined) {
      // A client that names no run (an older SuperNode, a plain gRPC client) sees the shared
      // store, then the ServerApp chunks of every run that sent it work.
      const runs = [...this.#participants].filter(([, nodes]) => nodes.has(nodeId)).map(([r]) => r);
      return runs.reduceRight<ChunkStore>(
        (inner, r) => this.relay.reader(r, [SERVER_SCOPE], inner),
        this.chunks,
      );
    }
    this.#assertParticipant(nodeId, runId);
    return this.relay.reader(runId, [SERVER_SCOPE, nodeId], this.chunks);
  }

  #assertParticipant(nodeId: string, runId: string): void {
    if (!this.#participants.get(runId)?.has(nodeId))
      throw new PollenError('CHUNK_SCOPE_DENIED', `This node was sent no instruction of run ${runId}`);
  }

  /** Where the ServerApp of `runId` uploads chunks. */
  appUploads(runId: string): ChunkStore {
    return this.relay.scope(runId, SERVER_SCOPE);
  }

  /** What the ServerApp of `runId` reads: node `sourceNodeId`'s uploads (a reply's), then its own. */
  appReads(runId: string, sourceNodeId: string | undefined): ChunkStore {
    if (sourceNodeId !== undefined && !isScopeName(sourceNodeId))
      throw new PollenError('INVALID_ARGUMENT', 'The chunk source must be a node id');
    const uploaders = sourceNodeId ? [sourceNodeId, SERVER_SCOPE] : [SERVER_SCOPE];
    return this.relay.reader(runId, uploaders, this.chunks);
  }

  /** Drop run chunks no stored message names and nobody used for `idleMs` (relay-chunks.ts). */
  async sweepRunChunks(idleMs: number): Promise<number> {
    return this.relay.sweep(await this.state.liveChunkIds(), idleMs);
  }

  /** A run finished: its chunks, participants and unread replies go. */
  /** A round of `runId` was reported at `at` (from the run's start if it is the first). */
  roundReported(runId: string, at: number, startedAt: number | null, participants: number): void {
    const since = this.#lastRound.get(runId) ?? startedAt ?? at;
    this.#lastRound.set(runId, at);
    this.events.round((at - since) / 1000, participants);
  }

  async runFinished(runId: string): Promise<void> {
    this.#participants.delete(runId);
    this.#lastRound.delete(runId);
    this.replyQueues.dropRun(runId);
    await this.relay.dropRun(runId);
  }

  /** End every long poll (the SuperLink is stopping): they answer empty at once. */
  close(): void {
    this.#closing = true;
    this.instructions.notifyAll();
    this.replies.notifyAll();
  }

  // ------------------------------------------------------------------------------------------
  // Runs

  /**
   * A run as the wire shows it. With `shared` (the Fleet API's GetRun: every node asks when a
   * run's first instruction reaches it, so a thousand ask at once) answers are shared for up to
   * RUN_CACHE_MS; a node sees a status change that much later. Admins and apps get it fresh.
   */
  wireRun(runId: string, shared = false): Promise<WireRun> {
    if (!shared) return this.#loadWireRun(runId);
    const now = this.time.now();
    const hit = this.#runCache.get(runId);
    if (hit && now - hit.at < RUN_CACHE_MS) return hit.run;
    if (this.#runCache.size >= 256)
      for (const [id, e] of this.#runCache) if (now - e.at >= RUN_CACHE_MS) this.#runCache.delete(id);
    const run = this.#loadWireRun(runId);
    this.#runCache.set(runId, { at: now, run });
    // Errors are not kept.
    run.catch(() => this.#runCache.delete(runId));
    return run;
  }

  /** Of these runs (the first 64), those finished or unknown: run status for heartbeats. */
  async finishedRuns(runIds: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const runId of runIds.slice(0, 64)) {
      const run = await this.wireRun(runId, true).catch(() => undefined);
      if (!run || run.status === 'finished') out.push(runId);
    }
    return out;
  }

  async #loadWireRun(runId: string): Promise<WireRun> {
    const run = await this.state.getRun(runId);
    if (!run) throw new PollenError('RUN_NOT_FOUND', `No run ${runId}`);
    return await this.toWireRun(run);
  }

  async toWireRun(run: Run): Promise<WireRun> {
    let fab: Fab | undefined;
    try {
      fab = await this.fabs.get(run.fabHash);
    } catch {
      fab = create(FabSchema, { hash: run.fabHash, name: run.fabName, version: run.fabVersion });
    }
    return create(RunSchema, {
      runId: run.runId,
      status: run.status,
      subStatus: run.subStatus,
      reason: run.reason ?? '',
      fab,
      runConfig: configToWire(run.runConfig),
      federation: run.federation,
      createdBy: run.createdBy,
      createdAt: BigInt(run.createdAt),
      runningAt: BigInt(run.runningAt ?? 0),
      finishedAt: BigInt(run.finishedAt ?? 0),
    });
  }

  // ------------------------------------------------------------------------------------------
  // Federations: a run reaches only the nodes serving its federation

  /** Whether node `nodeId` serves the federation of run `runId` (the run's answer is shared, see wireRun). */
  async serves(runId: string, nodeId: string): Promise<boolean> {
    const { federation } = await this.wireRun(runId, true);
    const node = this.state.getNode(nodeId) ?? { nodeId, certOrg: null };
    return this.state.federations.serves(federation, node);
  }

  /** The online nodes serving run `runId`'s federation: what its ServerApp may send work to. */
  async nodesOfRun(runId: string): Promise<string[]> {
    const { federation } = await this.wireRun(runId, true);
    const feds = this.state.federations;
    return this.state.onlineNodeIds().filter((id) => {
      const node = this.state.getNode(id);
      return node !== undefined && feds.serves(federation, node);
    });
  }

  // ------------------------------------------------------------------------------------------
  // Messages

  async #checkChunks(message: WireMessage, held: ChunkStore): Promise<string[]> {
    const ids = chunkIdsOf(message);
    if (ids.length === 0) return ids;
    const missing = await held.missing(ids);
    if (missing.length > 0)
      throw new PollenError('CHUNK_MISSING', `Push the message's ${missing.length} missing chunks first`, {
        data: { missing: missing.slice(0, 10) },
      });
    return ids;
  }

  /** Queue a ServerApp's instructions (validated as a batch by the state). */
  async pushInstructions(runId: string, messages: WireMessage[]): Promise<string[]> {
    const items = [];
    const held = this.appReads(runId, undefined);
    const serving = new Map<string, boolean>();
    for (const m of messages) {
      const md = m.metadata;
      if (!md) throw new PollenError('MESSAGE_INVALID', 'A message needs metadata');
      if (m.body.case !== 'content')
        throw new PollenError('MESSAGE_INVALID', 'An instruction must carry content');
      if (md.replyToMessageId)
        throw new PollenError('MESSAGE_INVALID', 'A reply cannot be sent as an instruction');
      md.runId = runId;
      md.srcNodeId = '0';
      if (!serving.has(md.dstNodeId)) serving.set(md.dstNodeId, await this.serves(runId, md.dstNodeId));
      if (!serving.get(md.dstNodeId))
        throw new PollenError(
          'NODE_NOT_IN_FEDERATION',
          `Node ${md.dstNodeId} does not serve the federation of run ${runId}`,
          { data: { runId, nodeId: md.dstNodeId } },
        );
      const chunkIds = await this.#checkChunks(m, held);
      items.push({
        messageId: md.messageId,
        dstNodeId: md.dstNodeId,
        groupId: md.groupId,
        messageType: md.messageType,
        createdAt: Number(md.createdAt) || this.time.now(),
        ttlMs: Math.round(md.ttlSeconds * 1000),
        payload: toBinary(MessageSchema, m),
        chunkIds,
      });
    }
    await this.state.pushInstructions(runId, items);
    const nodes = new Set(items.map((i) => i.dstNodeId));
    const participants = this.#participants.get(runId) ?? new Set<string>();
    this.#participants.set(runId, participants);
    for (const nodeId of nodes) participants.add(nodeId);
    for (const nodeId of nodes) {
      this.#pushed.set(nodeId, (this.#pushed.get(nodeId) ?? 0) + 1);
      this.instructions.notify(nodeId);
    }
    return items.map((i) => i.messageId);
  }

  /**
   * A node's queued instructions. With `waitMs` (a long poll, capped at 30 s) an empty queue is
   * waited on: the call answers as soon as an instruction is pushed for the node, or empty when
   * the wait ends, the caller goes away (`signal`) or the SuperLink stops. An idle node then
   * costs one request per wait instead of one per poll interval; the wait itself is a timer and
   * a closure, and an empty queue is answered from memory (LinkState's per-node counts).
   */
  async pullInstructions(
    nodeId: string,
    limit: number,
    waitMs = 0,
    signal?: AbortSignal,
  ): Promise<WireMessage[]> {
    const payloads = await this.pullInstructionBytes(nodeId, limit, waitMs, signal);
    return payloads.map((p) => fromBinary(MessageSchema, p));
  }

  /** pullInstructions, as the stored wire bytes of each Message (see fleet-service.ts). */
  async pullInstructionBytes(
    nodeId: string,
    limit: number,
    waitMs = 0,
    signal?: AbortSignal,
  ): Promise<Uint8Array[]> {
    const deadline = this.time.now() + Math.min(Math.max(waitMs, 0), MAX_INSTRUCTION_WAIT_MS);
    for (;;) {
      const seen = this.#pushed.get(nodeId);
      const pulled = await this.state.pullInstructions(nodeId, { limit });
      // Queued before the node left the run's federation: withheld (the instruction expires).
      const rows = [];
      for (const r of pulled) if (await this.serves(r.runId, nodeId).catch(() => false)) rows.push(r);
      if (rows.length > 0) return rows.map((r) => r.payload);
      if (pulled.length > 0) continue;
      const left = deadline - this.time.now();
      if (left <= 0 || signal?.aborted || this.#closing) return [];
      // Pushed while we looked: look again rather than wait for the next push.
      if (this.#pushed.get(nodeId) !== seen) continue;
      await this.instructions.wait(nodeId, left, signal);
      // Woken without a push (time is up, the caller left, the node left, we are stopping).
      if (this.#pushed.get(nodeId) === seen) return [];
    }
  }

  /** Store one reply from a node; answers per message so one bad reply spoils nothing else. */
  async pushReply(nodeId: string, m: WireMessage): Promise<MessageInitShape<typeof PushResultSchema>> {
    const messageId = m.metadata?.messageId ?? '';
    try {
      const md = m.metadata;
      if (!md?.messageId) throw new PollenError('MESSAGE_INVALID', 'A reply needs metadata and an id');
      if (!md.replyToMessageId)
        throw new PollenError('MESSAGE_INVALID', 'A reply must name the instruction it answers');
      md.srcNodeId = nodeId;
      md.dstNodeId = '0';
      // The ServerApp rebuilds an SDK Message from this metadata: refuse what it would refuse,
      // so one node's malformed reply cannot fail the run for everyone.
      const short = (v: string) => typeof v === 'string' && v.length <= 256;
      if (!short(md.messageId) || !short(md.replyToMessageId) || !short(md.groupId) || !short(md.runId))
        throw new PollenError('MESSAGE_INVALID', 'Reply ids must be strings of at most 256 characters');
      if (!(MESSAGE_TYPES as readonly string[]).includes(md.messageType))
        throw new PollenError(
          'MESSAGE_INVALID',
          `Reply messageType must be one of ${MESSAGE_TYPES.join(', ')}`,
        );
      if (!Number.isFinite(md.ttlSeconds) || md.ttlSeconds < 0 || md.createdAt < 0n)
        throw new PollenError('MESSAGE_INVALID', 'Reply ttlSeconds and createdAt must be non-negative');
      checkArrayHeaders(m);
      const chunkIds = await this.#checkChunks(
        m,
        isScopeName(md.runId) && isScopeName(nodeId)
          ? this.relay.reader(md.runId, [nodeId, SERVER_SCOPE], this.chunks)
          : this.chunks,
      );
      const payload = toBinary(MessageSchema, m);
      // Counted before it is stored, so concurrent pushes cannot pass the node's cap together.
      this.replyQueues.reserve(nodeId, payload.byteLength);
      let runId: string;
      try {
        runId = await this.state.pushReply(nodeId, {
          messageId: md.messageId,
          replyTo: md.replyToMessageId,
          payload,
          chunkIds,
        });
      } catch (e) {
        this.replyQueues.release(nodeId, payload.byteLength);
        throw await this.#explainLateReply(e, md.runId);
      }
      this.replyQueues.stored(runId, md.messageId, nodeId, payload.byteLength);
      this.replies.notify(runId);
      if (m.body.case === 'error') await this.#logNodeError(runId, nodeId, md.messageType, m.body.value);
      return { messageId };
    } catch (e) {
      const code = errorCodeOf(e);
      if (code === 'INTERNAL') this.log.error({ err: e, nodeId }, 'storing a reply failed');
      // Only a PollenError's public message goes back to the node; anything else stays in our log.
      return {
        messageId,
        errorCode: code,
        errorMessage: e instanceof PollenError ? e.message : 'Internal error',
      };
    }
  }

  /**
   * A finished run's instructions are gone with it, so a reply that comes after a stop answers
   * nothing: say that the run ended rather than that the node sent a stray reply.
   */
  async #explainLateReply(e: unknown, runId: string): Promise<unknown> {
    if (!(e instanceof PollenError) || e.code !== 'MESSAGE_NOT_FOR_NODE' || !runId) return e;
    const run = await this.state.getRun(runId);
    if (run?.status !== 'finished') return e;
    return new PollenError('RUN_NOT_RUNNING', `Run ${runId} is finished (${run.subStatus}), not running`, {
      data: { runId, status: run.status, subStatus: run.subStatus },
    });
  }

  /**
   * A node's error reply becomes a line of its run's log, so whoever follows the run sees which
   * node failed and why, whatever the ServerApp does with the reply. The text is the node's: one
   * line, clipped.
   */
  async #logNodeError(
    runId: string,
    nodeId: string,
    messageType: string,
    error: { code: string; reason: string },
  ): Promise<void> {
    const text = clip(oneLine(`node ${nodeId} ${messageType} failed: ${error.code}: ${error.reason}`), 1200);
    await this.state
      .appendLogs(runId, [{ stream: 'system', text }])
      .catch((e) => this.log.warn({ err: e, runId, nodeId }, 'logging a node error failed'));
  }

  /** Replies for a ServerApp, waiting up to `waitMs` for the first one to arrive. */
  async pullReplies(
    runId: string,
    ids: string[],
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<WireMessage[]> {
    const deadline = this.time.now() + Math.min(waitMs, 30_000);
    for (;;) {
      const out = await this.state.pullReplies(runId, ids);
      for (const r of out) if (r.kind === 'reply') this.replyQueues.read(runId, r.messageId);
      if (out.length > 0 || this.time.now() >= deadline || signal?.aborted || this.#closing)
        return out.map((r) => this.#replyMessage(runId, r));
      // Offline detection is time based: look again at least every second.
      await this.replies.wait(runId, Math.min(1000, deadline - this.time.now()), signal);
      // The replies of a round arrive close together: gather them for a moment, so a ServerApp
      // waiting on N nodes makes O(round time / linger) pulls over all N ids, not O(N).
      const linger = Math.min(REPLY_LINGER_MS, deadline - this.time.now());
      if (linger > 0 && !signal?.aborted) await this.time.sleep(linger, signal).catch(() => {});
    }
  }

  #replyMessage(runId: string, r: Awaited<ReturnType<LinkState['pullReplies']>>[number]): WireMessage {
    if ('payload' in r && r.payload) return fromBinary(MessageSchema, r.payload);
    const e = r as SynthesizedErrorReply;
    return create(MessageSchema, {
      metadata: {
        runId,
        messageId: `error-${e.replyTo}`,
        srcNodeId: e.dstNodeId ?? '',
        dstNodeId: '0',
        replyToMessageId: e.replyTo,
        groupId: e.groupId,
        messageType: e.messageType,
        createdAt: BigInt(this.time.now()),
      },
      body: { case: 'error', value: { code: e.error.code, reason: e.error.reason } },
    });
  }
}

/**
 * Refuse a reply whose array headers do not add up (dtype × shape = nbytes = its inline bytes,
 * or chunks that can hold them): the ServerApp could not decode it, and the node hears why here
 * while its instruction stays open. Chunk contents are checked when they are read.
 */
function checkArrayHeaders(m: WireMessage): void {
  if (m.body.case !== 'content') return;
  for (const r of m.body.value.records) {
    if (r.record.case !== 'arrays') continue;
    for (const a of r.record.value.arrays) {
      const where = `Array "${a.name.slice(0, 256)}" in record "${r.name.slice(0, 256)}"`;
      if (!isDType(a.dtype)) throw new PollenError('RECORD_INVALID', `${where}: unknown dtype`);
      const bytes = a.shape.reduce((n, d) => n * d, BigInt(DTYPES[a.dtype].bytes));
      if (bytes !== a.nbytes)
        throw new PollenError(
          'RECORD_INVALID',
          `${where}: shape and dtype give ${bytes} bytes, nbytes says ${a.nbytes}`,
        );
      const fits =
        a.chunkIds.length === 0
          ? BigInt(a.inline.byteLength) === a.nbytes
          : a.inline.byteLength === 0 && BigInt(a.chunkIds.length) <= a.nbytes;
      if (!fits)
        throw new PollenError(
          'RECORD_INVALID',
          `${where}: its data does not hold nbytes (${a.nbytes}) bytes`,
        );
    }
  }
}
