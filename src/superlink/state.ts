/**
 * LinkState: the SuperLink's durable state (nodes, runs, messages, logs, round metrics) over SQLite
 * or PostgreSQL, so a restarted SuperLink keeps its runs, nodes, key registrations and queued work.
 *
 * One SuperLink process owns the store. That is what lets the hot paths stay in memory: node
 * liveness (heartbeats are flushed in batches, not one fsync each), the registered-key map checked
 * on every session open, and a per-node count of queued instructions so an empty poll never
 * touches the database. All of these are rebuilt from the tables at open.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Kysely, sql, type Transaction } from 'kysely';
import { PollenError } from '../errors.js';
import type { UserConfig } from '../sdk/context.js';
import { SERVER_NODE_ID } from '../sdk/message.js';
import { WriteBatcher } from '../store/batcher.js';
import { type Database, openDatabase } from '../store/database.js';
import { bindFirstSite, registeredSite, type SiteBinding } from './node-sites.js';
import { NonceStore } from './nonce-store.js';
import { type LinkSchema, linkStateMigrations } from './state-schema.js';

type Tx = Transaction<LinkSchema>;
type NodeRow = LinkSchema['nodes'];
type RunRow = LinkSchema['runs'];
type MessageRow = LinkSchema['messages'];

/**
 * A node is online while `now < online_until`, where online_until = last heartbeat + 2 × its
 * heartbeat interval + ONLINE_GRACE_MS: one missed heartbeat is tolerated, and the grace absorbs
 * network delay and the SuperLink's own pauses.
 */
export const ONLINE_GRACE_MS = 5_000;
/** Default bound on one stored message payload; large arrays travel as chunks. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Default period of the liveness flush (online_until / last_seen_at) to the store. */
export const DEFAULT_LIVENESS_FLUSH_MS = 5_000;
/** What the store keeps of a payload (the bytes are in LinkState.payloads). */
const EMPTY_PAYLOAD = Buffer.alloc(0);
/**
 * Most payload bytes one pull claims (instructions for a node, replies for a ServerApp): one
 * stored message is at most DEFAULT_MAX_MESSAGE_BYTES, so an answer stays under the RPC limit
 * (32 MiB). What is left stays queued for the next pull instead of being claimed and lost.
 */
export const PULL_BYTE_BUDGET = 16 * 1024 * 1024;

/** The longest prefix of `rows` within `budget` payload bytes (at least one row). */
function withinBudget<T extends { size: number }>(rows: T[], budget: number): T[] {
  let bytes = 0;
  let n = 0;
  for (const r of rows) {
    if (n > 0 && bytes + r.size > budget) break;
    bytes += r.size;
    n++;
  }
  return rows.slice(0, n);
}
/** Rows per statement when a list is long (stays far below SQLite's bound-parameter limit). */
const CHUNK = 500;

export type NodeStatus = 'online' | 'offline' | 'registered';
export interface NodeInfo {
  nodeId: string;
  name: string;
  /** True while an admin's key registration stands. */
  registered: boolean;
  /** 'registered': key registered by an admin, node never activated. */
  status: NodeStatus;
  lastSeenAt: number | null;
  onlineUntil: number;
  certFingerprint: string | null;
  /** `TYPE BASE64` of the OpenSSH public key. */
  publicKey: string | null;
  /** The site (client certificate name) the registered key is bound to; null until bound. */
  site: string | null;
  siteBoundAt: number | null;
  /** `admin:NAME` (named at registration) or `first-use`. */
  siteBoundBy: string | null;
}

export type RunStatus = RunRow['status'];
export type RunSubStatus = RunRow['sub_status'];
export interface Run {
  runId: string;
  status: RunStatus;
  subStatus: RunSubStatus;
  reason: string;
  fabHash: string;
  fabName: string;
  fabVersion: string;
  runConfig: UserConfig;
  federation: string;
  createdBy: string;
  createdAt: number;
  pendingAt: number | null;
  startingAt: number | null;
  runningAt: number | null;
  finishedAt: number | null;
}
export interface CreateRunInput {
  fabHash: string;
  fabName: string;
  fabVersion: string;
  runConfig: UserConfig;
  federation: string;
  createdBy: string;
}

export interface InstructionInput {
  messageId: string;
  dstNodeId: string;
  groupId: string;
  messageType: string;
  /** Epoch ms; the instruction expires at createdAt + ttlMs. */
  createdAt: number;
  ttlMs: number;
  /** The serialized message. */
  payload: Uint8Array;
  /** sha256 (hex) of each chunk the payload references. */
  chunkIds: string[];
}
export interface ReplyInput {
  messageId: string;
  /** The instruction this answers; run, group, type and expiry are taken from it. */
  replyTo: string;
  /** Epoch ms; the SuperLink's clock if left out. */
  createdAt?: number;
  payload: Uint8Array;
  chunkIds: string[];
}

export interface StoredMessage {
  messageId: string;
  runId: string;
  kind: 'instruction' | 'reply';
  srcNodeId: string;
  dstNodeId: string;
  /** null for an instruction. */
  replyTo: string | null;
  groupId: string;
  messageType: string;
  createdAt: number;
  ttlMs: number;
  expiresAt: number;
  payload: Uint8Array;
  chunkIds: string[];
}
export interface Instruction extends StoredMessage {
  kind: 'instruction';
  replyTo: null;
}
export interface StoredReply extends StoredMessage {
  kind: 'reply';
  replyTo: string;
}
/** Made by the SuperLink when an instruction can no longer be answered: returned exactly once. */
export interface SynthesizedErrorReply {
  kind: 'error';
  runId: string;
  replyTo: string;
  /** The node the instruction was sent to (the one that did not answer). */
  dstNodeId: string;
  groupId: string;
  messageType: string;
  error: { code: 'NODE_UNAVAILABLE' | 'MESSAGE_EXPIRED'; reason: string };
}
export type PulledReply = StoredReply | SynthesizedErrorReply;

export type LogStream = 'stdout' | 'stderr' | 'system';
export interface LogLineInput {
  stream: LogStream;
  text: string;
  /** Epoch ms; the SuperLink's clock if left out. */
  at?: number;
}
export interface LogLine {
  seq: number;
  at: number;
  stream: LogStream;
  text: string;
}

export interface RoundMetricsInput {
  round: number;
  /** Epoch ms; the SuperLink's clock if left out. */
  at?: number;
  metrics: Record<string, number>;
  nodeIds?: string[];
  bytesSent?: number;
  bytesReceived?: number;
}
export interface RoundMetrics {
  round: number;
  at: number;
  metrics: Record<string, number>;
  nodeIds: string[];
  bytesSent: number;
  bytesReceived: number;
}

export interface LinkStateOptions {
  /** A path, `sqlite:PATH`, `:memory:` or `postgres://…` (see openDatabase). */
  url: string;
  now?: () => number;
  /** Largest payload of one message (default 16 MiB). */
  maxMessageBytes?: number;
  /** How often liveness is written to the store (default 5 s; also at close). */
  livenessFlushMs?: number;
  poolSize?: number;
}

interface NodeMem {
  nodeId: string;
  name: string;
  certFingerprint: string | null;
  publicKey: string | null;
  registered: boolean;
  heartbeatIntervalMs: number;
  onlineUntil: number;
  lastSeenAt: number | null;
  activatedAt: number | null;
  deactivatedAt: number | null;
  site: string | null;
  siteBoundAt: number | null;
  siteBoundBy: string | null;
  /** The node process seen last (ActivateNode instance_id; memory only). */
  instanceId?: string;
  /** When that process first activated: instructions delivered earlier were lost with the old one. */
  restartedAt?: number;
}

/**
 * Queued-instruction hint per node: `count` is never below the number of deliverable instructions
 * (an over-estimate costs one query, which corrects it). `epoch` moves on every push so a pull
 * that raced a push does not overwrite its increment with a stale recount.
 */
interface Queued {
  count: number;
  epoch: number;
}

const LEGAL: Record<RunStatus, readonly RunStatus[]> = {
  pending: ['starting', 'finished'],
  starting: ['running', 'finished'],
  running: ['finished'],
  finished: [],
};
const STATUS_TIME = {
  pending: 'pending_at',
  starting: 'starting_at',
  running: 'running_at',
  finished: 'finished_at',
} as const;
const LOG_STREAMS: readonly LogStream[] = ['stdout', 'stderr', 'system'];

export async function openLinkState(options: LinkStateOptions): Promise<LinkState> {
  const backend = /^postgres(ql)?:\/\//.test(options.url) ? 'postgres' : 'sqlite';
  const store = await openDatabase<LinkSchema>({
    url: options.url,
    migrations: linkStateMigrations(backend),
    poolSize: options.poolSize,
  });
  const state = new LinkState(store, options);
  try {
    await state.load();
  } catch (e) {
    await store.close();
    throw e;
  }
  return state;
}

export class LinkState {
  private readonly db: Kysely<LinkSchema>;
  /**
   * The payloads of stored messages, by message id. Rows in the store keep everything else (ids,
   * routing, expiry, chunk ids, size); the bytes stay in memory because they only matter to a
   * run in progress, and a run does not survive a SuperLink restart (its messages are dropped on
   * open). Writing each 40 KB model into the store and reading it back cost about a quarter of
   * the SuperLink's CPU in a 1,000-node round (docs/benchmarks.md).
   */
  private readonly payloads = new Map<string, Uint8Array>();
  /**
   * Group commit for the per-node hot writes (activation, delivery, replies): when a thousand
   * nodes act at once, one durable commit covers many of them, each still atomic on its own.
   */
  private readonly batcher: WriteBatcher<LinkSchema>;
  private readonly pg: boolean;
  private readonly now: () => number;
  private readonly maxMessageBytes: number;
  private readonly nodes = new Map<string, NodeMem>();
  /** Nonces of signed requests seen inside the window (replays refused across restarts). */
  readonly nonces: NonceStore;
  /** Registered public key (`TYPE BASE64`) → node id. */
  private readonly keys = new Map<string, string>();
  private readonly queued = new Map<string, Queued>();
  /** Nodes whose liveness changed since the last flush. */
  private readonly dirty = new Set<string>();
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private closed: Promise<void> | undefined;
  /** Next log seq per run; appends are chained so seqs commit in order (readers page by seq). */
  private readonly logNext = new Map<string, number>();
  private logChain: Promise<unknown> = Promise.resolve();
  /** The last error of a background liveness flush (retried on the next one). */
  lastFlushError: unknown;

  constructor(
    private readonly store: Database<LinkSchema>,
    options: LinkStateOptions,
  ) {
    this.db = store.db;
    this.batcher = new WriteBatcher(store.db);
    this.pg = store.backend === 'postgres';
    this.now = options.now ?? Date.now;
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.nonces = new NonceStore(store.db, this.pg ? undefined : this.batcher, this.now);
    this.timer = setInterval(() => {
      this.flushLiveness().catch((e) => {
        this.lastFlushError = e;
      });
    }, options.livenessFlushMs ?? DEFAULT_LIVENESS_FLUSH_MS);
    this.timer.unref();
  }

  get backend(): string {
    return this.store.backend;
  }

  /** Rebuild the in-memory indexes from the tables. */
  async load(): Promise<void> {
    // Their payloads were in the memory of the previous process, and their runs fail on restart.
    await this.db.deleteFrom('messages').execute();
    await this.nonces.sweep();
    for (const r of await this.db.selectFrom('nodes').selectAll().execute()) {
      const n = nodeMem(r);
      this.nodes.set(n.nodeId, n);
      if (n.registered && n.publicKey) this.keys.set(n.publicKey, n.nodeId);
    }
    const counts = await this.db
      .selectFrom('messages')
      .select(['dst_node_id', sql<number>`count(*)`.as('n')])
      .where('kind', '=', 'instruction')
      .where('delivered_at', 'is', null)
      .groupBy('dst_node_id')
      .execute();
    for (const c of counts) this.queued.set(c.dst_node_id, { count: Number(c.n), epoch: 0 });
  }

  // ---------------------------------------------------------------------------------------------
  // Nodes

  /**
   * Register a SuperNode public key (an admin action). `nodeId` is derived from the key by the
   * caller. With `site` the key opens sessions only under that client certificate name; without,
   * it is bound to the first one that activates with it (`bindSite`).
   */
  async registerNodeKey(input: {
    nodeId: string;
    publicKey: string;
    name: string;
    site?: string;
    /** The admin registering (recorded as `admin:NAME` with a named site). */
    by?: string;
  }): Promise<NodeInfo> {
    checkId('nodeId', input.nodeId);
    checkName(input.name);
    if (input.site !== undefined) checkId('site', input.site);
    const key = normalizeKey(input.publicKey);
    if (!key) throw new PollenError('SSH_KEY_INVALID', 'The public key is not an OpenSSH public key line');
    const existing = this.keys.get(key);
    if (existing !== undefined) throw alreadyRegistered(existing);
    const held = this.nodes.get(input.nodeId);
    if (held?.registered && held.publicKey !== key) throw alreadyRegistered(held.nodeId);
    const now = this.now();
    const binding = registeredSite(input.site, input.by, now);
    try {
      await this.db.transaction().execute(async (tx) => {
        const other = await tx
          .selectFrom('nodes')
          .select('node_id')
          .where('public_key', '=', key)
          // Another id with this key, or this id already registered with it (a racing twin).
          .where((eb) => eb.or([eb('node_id', '<>', input.nodeId), eb('registered', '=', 1)]))
          .executeTakeFirst();
        if (other) throw alreadyRegistered(other.node_id);
        await tx
          .insertInto('nodes')
          .values({
            node_id: input.nodeId,
            name: input.name,
            cert_fingerprint: null,
            public_key: key,
            registered: 1,
            heartbeat_interval_ms: 0,
            online_until: 0,
            last_seen_at: null,
            activated_at: null,
            deactivated_at: null,
            created_at: now,
            ...binding,
          })
          .onConflict((oc) =>
            // A new registration replaces the binding of an earlier one of this key.
            oc
              .column('node_id')
              .doUpdateSet({ name: input.name, public_key: key, registered: 1, ...binding }),
          )
          .execute();
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw alreadyRegistered(this.keys.get(key) ?? '');
      throw e;
    }
    const n = held ?? {
      nodeId: input.nodeId,
      certFingerprint: null,
      heartbeatIntervalMs: 0,
      onlineUntil: 0,
      lastSeenAt: null,
      activatedAt: null,
      deactivatedAt: null,
    };
    const mem: NodeMem = {
      ...n,
      name: input.name,
      publicKey: key,
      registered: true,
      site: binding.site,
      siteBoundAt: binding.site_bound_at,
      siteBoundBy: binding.site_bound_by,
    };
    this.nodes.set(mem.nodeId, mem);
    this.keys.set(key, mem.nodeId);
    return this.info(mem, now);
  }

  /**
   * The site a registered key is bound to, binding it to `site` if it is not bound yet (its
   * first use). The binding is a compare-and-set in the store: of two activations racing under
   * different certificates, on this SuperLink or on another sharing the store, one binds and the
   * other reads that binding back. The caller refuses when the answer is not its site.
   */
  async bindSite(nodeId: string, site: string): Promise<SiteBinding> {
    checkId('site', site);
    const n = this.nodes.get(nodeId);
    if (!n?.registered) throw notRegistered(nodeId);
    if (n.site !== null) return { site: n.site, boundNow: false };
    const stored = await bindFirstSite(this.db, this.batcher, nodeId, site, this.now());
    if (!stored) throw notRegistered(nodeId);
    const { boundNow, ...binding } = stored;
    Object.assign(n, binding);
    return { site: binding.site, boundNow };
  }

  /**
   * Withdraw a key registration: the node is deactivated and can no longer activate, and its
   * unanswered instructions are answered with NODE_UNAVAILABLE errors by pullReplies.
   */
  async unregisterNode(nodeId: string): Promise<void> {
    const n = this.nodes.get(nodeId);
    if (!n) throw unknownNode(nodeId);
    if (!n.registered) throw notRegistered(nodeId);
    const now = this.now();
    await this.db
      .updateTable('nodes')
      .set({ registered: 0, deactivated_at: now, online_until: now })
      .where('node_id', '=', nodeId)
      .execute();
    n.registered = false;
    n.deactivatedAt = now;
    n.onlineUntil = now;
    if (n.publicKey) this.keys.delete(n.publicKey);
    this.queued.delete(nodeId);
  }

  /** The node id of a registered key, from memory (this is checked on every session open). */
  isKeyRegistered(publicKeyLine: string): string | undefined {
    const key = normalizeKey(publicKeyLine);
    return key ? this.keys.get(key) : undefined;
  }

  /**
   * A node starts (or restarts) a session. An unknown node is created (certificate-only mode: the
   * caller has authenticated it); a node whose key registration was withdrawn is refused. A
   * registered node keeps the admin-given name.
   */
  async activateNode(input: {
    nodeId: string;
    name: string;
    certFingerprint?: string;
    heartbeatIntervalMs: number;
    /** The node process (see fleet.proto); a new one marks a restart. */
    instanceId?: string;
  }): Promise<NodeInfo> {
    checkId('nodeId', input.nodeId);
    checkName(input.name);
    checkInterval(input.heartbeatIntervalMs);
    const n = this.nodes.get(input.nodeId);
    if (n && n.publicKey !== null && !n.registered)
      throw new PollenError('NODE_NOT_REGISTERED', `Node ${input.nodeId} is no longer registered`, {
        data: { nodeId: input.nodeId },
      });
    const now = this.now();
    const mem: NodeMem = {
      nodeId: input.nodeId,
      name: n?.registered ? n.name : input.name,
      certFingerprint: input.certFingerprint ?? n?.certFingerprint ?? null,
      publicKey: n?.publicKey ?? null,
      registered: n?.registered ?? false,
      heartbeatIntervalMs: input.heartbeatIntervalMs,
      onlineUntil: onlineUntil(now, input.heartbeatIntervalMs),
      lastSeenAt: now,
      activatedAt: now,
      deactivatedAt: null,
      site: n?.site ?? null,
      siteBoundAt: n?.siteBoundAt ?? null,
      siteBoundBy: n?.siteBoundBy ?? null,
      instanceId: input.instanceId || n?.instanceId,
      restartedAt:
        input.instanceId && n?.instanceId !== undefined && n.instanceId !== input.instanceId
          ? now
          : n?.restartedAt,
    };
    await this.batcher.run((tx) =>
      tx
        .insertInto('nodes')
        .values({
          node_id: mem.nodeId,
          name: mem.name,
          cert_fingerprint: mem.certFingerprint,
          public_key: mem.publicKey,
          registered: mem.registered ? 1 : 0,
          heartbeat_interval_ms: mem.heartbeatIntervalMs,
          online_until: mem.onlineUntil,
          last_seen_at: now,
          activated_at: now,
          deactivated_at: null,
          created_at: now,
        })
        .onConflict((oc) =>
          oc.column('node_id').doUpdateSet({
            name: mem.name,
            cert_fingerprint: mem.certFingerprint,
            heartbeat_interval_ms: mem.heartbeatIntervalMs,
            online_until: mem.onlineUntil,
            last_seen_at: now,
            activated_at: now,
            deactivated_at: null,
          }),
        )
        .execute(),
    );
    this.nodes.set(mem.nodeId, mem);
    return this.info(mem, now);
  }

  /** In memory only (flushed in batches): false if the node is unknown or not active. */
  heartbeat(nodeId: string, heartbeatIntervalMs: number): boolean {
    checkInterval(heartbeatIntervalMs);
    const n = this.nodes.get(nodeId);
    if (!n || !isActive(n)) return false;
    const now = this.now();
    n.lastSeenAt = now;
    n.heartbeatIntervalMs = heartbeatIntervalMs;
    n.onlineUntil = onlineUntil(now, heartbeatIntervalMs);
    this.dirty.add(nodeId);
    return true;
  }

  /** The node ended its session: offline at once (its unanswered instructions get error replies). */
  async deactivateNode(nodeId: string): Promise<void> {
    const n = this.nodes.get(nodeId);
    if (!n) throw unknownNode(nodeId);
    const now = this.now();
    // Group commit: a thousand nodes leaving together share a few commits.
    await this.batcher.run((tx) =>
      tx
        .updateTable('nodes')
        .set({ deactivated_at: now, online_until: now })
        .where('node_id', '=', nodeId)
        .execute(),
    );
    n.deactivatedAt = now;
    n.onlineUntil = now;
  }

  listNodes(): NodeInfo[] {
    const now = this.now();
    return [...this.nodes.values()].map((n) => this.info(n, now));
  }

  onlineNodeIds(): string[] {
    const now = this.now();
    const out: string[] = [];
    for (const n of this.nodes.values()) if (isOnline(n, now)) out.push(n.nodeId);
    return out;
  }

  getNode(nodeId: string): NodeInfo | undefined {
    const n = this.nodes.get(nodeId);
    return n ? this.info(n, this.now()) : undefined;
  }

  /** Write changed liveness (online_until, last_seen_at, interval) in one transaction. */
  async flushLiveness(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => {});
    if (this.dirty.size === 0) return;
    const ids = [...this.dirty];
    this.dirty.clear();
    const rows = ids.flatMap((id) => {
      const n = this.nodes.get(id);
      return n ? [n] : [];
    });
    this.flushing = this.db
      .transaction()
      .execute(async (tx) => {
        for (let i = 0; i < rows.length; i += CHUNK) {
          const values = rows
            .slice(i, i + CHUNK)
            .map(
              (n) =>
                sql`(${n.nodeId}, CAST(${n.onlineUntil} AS BIGINT), CAST(${n.lastSeenAt} AS BIGINT), CAST(${n.heartbeatIntervalMs} AS BIGINT))`,
            );
          // VALUES columns are named column1… on both backends.
          await sql`UPDATE nodes SET online_until = v.column2, last_seen_at = v.column3,
            heartbeat_interval_ms = v.column4 FROM (VALUES ${sql.join(values)}) AS v
            WHERE nodes.node_id = v.column1`.execute(tx);
        }
      })
      .catch((e) => {
        for (const id of ids) this.dirty.add(id);
        throw e;
      });
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  private info(n: NodeMem, now: number): NodeInfo {
    return {
      nodeId: n.nodeId,
      name: n.name,
      registered: n.registered,
      status: isOnline(n, now) ? 'online' : n.registered && n.activatedAt === null ? 'registered' : 'offline',
      lastSeenAt: n.lastSeenAt,
      onlineUntil: n.onlineUntil,
      certFingerprint: n.certFingerprint,
      publicKey: n.publicKey,
      site: n.site,
      siteBoundAt: n.siteBoundAt,
      siteBoundBy: n.siteBoundBy,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Runs

  async createRun(input: CreateRunInput): Promise<Run> {
    const now = this.now();
    const row: RunRow = {
      run_id: randomBytes(8).toString('hex'),
      status: 'pending',
      sub_status: '',
      reason: '',
      fab_hash: input.fabHash,
      fab_name: input.fabName,
      fab_version: input.fabVersion,
      run_config: JSON.stringify(input.runConfig ?? {}),
      federation: input.federation,
      created_by: input.createdBy,
      created_at: now,
      pending_at: now,
      starting_at: null,
      running_at: null,
      finished_at: null,
      serverapp_token_sha256: null,
    };
    await this.db.insertInto('runs').values(row).execute();
    return toRun(row);
  }

  async getRun(runId: string): Promise<Run | undefined> {
    const row = await this.db.selectFrom('runs').selectAll().where('run_id', '=', runId).executeTakeFirst();
    return row ? toRun(row) : undefined;
  }

  /** Newest first. */
  async listRuns(options: { limit?: number } = {}): Promise<Run[]> {
    const rows = await this.db
      .selectFrom('runs')
      .selectAll()
      .orderBy('created_at', 'desc')
      .orderBy('run_id', 'desc')
      .$if(options.limit !== undefined, (q) => q.limit(options.limit!))
      .execute();
    return rows.map(toRun);
  }

  /** Runs that were not finished: what a restarted SuperLink must resume or fail. */
  async unfinishedRuns(): Promise<Run[]> {
    const rows = await this.db
      .selectFrom('runs')
      .selectAll()
      .where('status', '<>', 'finished')
      .orderBy('created_at')
      .execute();
    return rows.map(toRun);
  }

  /**
   * Move a run along pending → starting → running → finished, or to finished (failed/stopped)
   * from any unfinished status. Compare-and-set in one transaction: of two racing transitions from
   * the same status, one wins and the other gets RUN_STATE_CONFLICT.
   */
  async transitionRun(
    runId: string,
    to: RunStatus,
    options: { subStatus?: RunSubStatus; reason?: string } = {},
  ): Promise<Run> {
    const subStatus = options.subStatus ?? '';
    if (to === 'finished' && !['completed', 'failed', 'stopped'].includes(subStatus))
      throw new PollenError(
        'INVALID_ARGUMENT',
        'A finished run needs a sub-status: completed, failed or stopped',
      );
    if (to !== 'finished' && subStatus !== '')
      throw new PollenError('INVALID_ARGUMENT', 'Only a finished run has a sub-status');
    const now = this.now();
    return this.db.transaction().execute(async (tx) => {
      const row = await tx
        .selectFrom('runs')
        .selectAll()
        .where('run_id', '=', runId)
        .$if(this.pg, (q) => q.forUpdate())
        .executeTakeFirst();
      if (!row) throw unknownRun(runId);
      const legal =
        LEGAL[row.status].includes(to) &&
        !(to === 'finished' && subStatus === 'completed' && row.status !== 'running');
      if (!legal)
        throw new PollenError(
          'RUN_STATE_CONFLICT',
          `Run ${runId} is ${row.status}; it cannot move to ${to}`,
          {
            data: { runId, status: row.status, subStatus: row.sub_status },
          },
        );
      const patch = {
        status: to,
        sub_status: subStatus,
        reason: options.reason ?? row.reason,
        [STATUS_TIME[to]]: now,
      };
      const r = await tx
        .updateTable('runs')
        .set(patch)
        .where('run_id', '=', runId)
        .where('status', '=', row.status)
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1)
        throw new PollenError('RUN_STATE_CONFLICT', `Run ${runId} changed status concurrently`, {
          data: { runId },
        });
      return toRun({ ...row, ...patch });
    });
  }

  /** Store the SHA-256 of the ServerApp's run token (the token itself is never stored). */
  async setRunToken(runId: string, token: string): Promise<void> {
    const r = await this.db
      .updateTable('runs')
      .set({ serverapp_token_sha256: sha256(token).toString('hex') })
      .where('run_id', '=', runId)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw unknownRun(runId);
  }

  /** Constant-time check of a run token; false for an unknown run or one without a token. */
  async verifyRunToken(runId: string, token: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('runs')
      .select('serverapp_token_sha256')
      .where('run_id', '=', runId)
      .executeTakeFirst();
    const digest = sha256(token);
    const stored = Buffer.from(row?.serverapp_token_sha256 ?? '', 'hex');
    // Compare even when nothing is stored, so the timing does not tell the two cases apart.
    const ok = timingSafeEqual(stored.length === digest.length ? stored : Buffer.alloc(32), digest);
    return ok && stored.length === digest.length;
  }

  // ---------------------------------------------------------------------------------------------
  // Messages

  /**
   * Queue instructions of a running run. The whole batch is checked (run running, destinations
   * known, ids new, sizes) before anything is stored, then stored in one transaction.
   */
  async pushInstructions(runId: string, items: InstructionInput[]): Promise<void> {
    if (items.length === 0) return;
    const ids = new Set<string>();
    for (const it of items) {
      checkId('messageId', it.messageId);
      checkMessage(it.createdAt, it.ttlMs);
      this.checkPayload(it.messageId, it.payload, it.chunkIds);
      if (ids.has(it.messageId)) throw duplicateMessage(it.messageId);
      ids.add(it.messageId);
      const n = this.nodes.get(it.dstNodeId);
      // A node whose key registration was withdrawn can never pull again.
      if (!n || (n.publicKey !== null && !n.registered)) throw unknownNode(it.dstNodeId);
    }
    let undo: (() => void) | undefined;
    try {
      await this.batcher.run(async (tx) => {
        await this.requireRunning(tx, [runId]);
        await this.refuseExistingIds(tx, [...ids]);
        const rows: MessageRow[] = items.map((it) => ({
          message_id: it.messageId,
          run_id: runId,
          kind: 'instruction',
          src_node_id: SERVER_NODE_ID,
          dst_node_id: it.dstNodeId,
          reply_to: null,
          group_id: it.groupId,
          message_type: it.messageType,
          created_at: it.createdAt,
          ttl_ms: it.ttlMs,
          expires_at: it.createdAt + it.ttlMs,
          delivered_at: null,
          payload: EMPTY_PAYLOAD,
          chunk_ids: JSON.stringify(it.chunkIds),
          size_bytes: it.payload.byteLength,
        }));
        undo = this.stagePayloads(items);
        for (let i = 0; i < rows.length; i += CHUNK)
          await tx
            .insertInto('messages')
            .values(rows.slice(i, i + CHUNK))
            .execute();
      });
    } catch (e) {
      undo?.();
      if (isUniqueViolation(e)) throw duplicateMessage(items.length === 1 ? items[0]!.messageId : undefined);
      throw e;
    }
    for (const it of items) {
      const q = this.queued.get(it.dstNodeId);
      if (q) {
        q.count++;
        q.epoch++;
      } else this.queued.set(it.dstNodeId, { count: 1, epoch: 1 });
    }
  }

  /**
   * Hand a node its undelivered, unexpired instructions of running runs, oldest first, marking
   * them delivered in the same transaction (each is delivered once, even to concurrent pulls).
   * A node with nothing queued is answered from memory.
   */
  async pullInstructions(
    nodeId: string,
    options: { limit?: number; maxBytes?: number } = {},
  ): Promise<Instruction[]> {
    const n = this.nodes.get(nodeId);
    if (!n) throw unknownNode(nodeId);
    const q = this.queued.get(nodeId);
    if (!q || q.count === 0 || !isActive(n)) return [];
    const epoch = q.epoch;
    const now = this.now();
    const limit = Math.max(1, Math.min(options.limit ?? 100, 10_000));
    const { rows, remaining } = await this.batcher.run(async (tx) => {
      const deliverable = () =>
        tx
          .selectFrom('messages')
          .where('kind', '=', 'instruction')
          .where('dst_node_id', '=', nodeId)
          .where('delivered_at', 'is', null)
          .where('expires_at', '>', now)
          .where('run_id', 'in', tx.selectFrom('runs').select('run_id').where('status', '=', 'running'));
      const selected = await deliverable()
        .selectAll()
        .orderBy('created_at')
        .orderBy('message_id')
        .limit(limit)
        // PostgreSQL: a concurrent pull skips the rows this one holds; SQLite has one writer.
        .$if(this.pg, (s) => s.forUpdate().skipLocked())
        .execute();
      const rows = withinBudget(
        selected.map((r) => ({ ...r, size: r.size_bytes })),
        options.maxBytes ?? PULL_BYTE_BUDGET,
      );
      if (rows.length > 0)
        // Delivered once: what stays is what pushReplies and pullReplies check.
        await tx
          .updateTable('messages')
          .set({ delivered_at: now })
          .where(
            'message_id',
            'in',
            rows.map((r) => r.message_id),
          )
          .where('delivered_at', 'is', null)
          .execute();
      // Fewer than the limit, all of them claimed: that was all of them.
      if (selected.length < limit && rows.length === selected.length) return { rows, remaining: 0 };
      const left = await deliverable().select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
      return { rows, remaining: Number(left.n) };
    });
    q.count = q.epoch === epoch ? remaining : Math.max(remaining, 1);
    rows.sort((a, b) => a.created_at - b.created_at || (a.message_id < b.message_id ? -1 : 1));
    // The payload goes out with the delivery and is not kept (an instruction is delivered once).
    return rows.map((r) => toMessage(r, this.takePayload(r.message_id)) as Instruction);
  }

  /**
   * Store a node's replies. Each must answer an instruction sent to this node, not yet answered,
   * not expired, of a running run; the whole batch is checked, then stored in one transaction.
   * A reply inherits run, group, type and expiry from its instruction. Returns each reply's run id.
   */
  async pushReplies(nodeId: string, items: ReplyInput[]): Promise<string[]> {
    if (items.length === 0) return [];
    if (!this.nodes.has(nodeId)) throw unknownNode(nodeId);
    const ids = new Set<string>();
    const answered = new Set<string>();
    for (const it of items) {
      checkId('messageId', it.messageId);
      checkId('replyTo', it.replyTo);
      this.checkPayload(it.messageId, it.payload, it.chunkIds);
      if (ids.has(it.messageId)) throw duplicateMessage(it.messageId);
      if (answered.has(it.replyTo)) throw duplicateReply(it.replyTo);
      ids.add(it.messageId);
      answered.add(it.replyTo);
    }
    const now = this.now();
    let undo: (() => void) | undefined;
    try {
      return await this.batcher.run(async (tx) => {
        // Lock the instructions: pullReplies cannot synthesize an error for one being answered.
        const found = await inChunks([...answered], (chunk) =>
          tx
            .selectFrom('messages')
            .select(['message_id', 'run_id', 'dst_node_id', 'group_id', 'message_type', 'expires_at'])
            .where('kind', '=', 'instruction')
            .where('message_id', 'in', chunk)
            .$if(this.pg, (s) => s.forUpdate())
            .execute(),
        );
        const byId = new Map(found.map((r) => [r.message_id, r]));
        for (const it of items) {
          const ins = byId.get(it.replyTo);
          if (!ins || ins.dst_node_id !== nodeId)
            throw new PollenError(
              'MESSAGE_NOT_FOR_NODE',
              `Message ${it.replyTo} is not an open instruction for node ${nodeId}`,
              { data: { messageId: it.replyTo, nodeId } },
            );
        }
        await this.requireRunning(tx, [...new Set(found.map((r) => r.run_id))]);
        const prior = await inChunks([...answered], (chunk) =>
          tx
            .selectFrom('messages')
            .select('reply_to')
            .where('kind', '=', 'reply')
            .where('reply_to', 'in', chunk)
            .execute(),
        );
        if (prior.length > 0) throw duplicateReply(prior[0]!.reply_to!);
        for (const it of items) {
          const ins = byId.get(it.replyTo)!;
          if (now >= ins.expires_at)
            throw new PollenError(
              'MESSAGE_EXPIRED',
              `Instruction ${it.replyTo} expired before the reply came`,
              {
                data: { messageId: it.replyTo },
              },
            );
        }
        await this.refuseExistingIds(tx, [...ids]);
        const rows: MessageRow[] = items.map((it) => {
          const ins = byId.get(it.replyTo)!;
          const createdAt = it.createdAt ?? now;
          return {
            message_id: it.messageId,
            run_id: ins.run_id,
            kind: 'reply',
            src_node_id: nodeId,
            dst_node_id: SERVER_NODE_ID,
            reply_to: it.replyTo,
            group_id: ins.group_id,
            message_type: ins.message_type,
            created_at: createdAt,
            ttl_ms: Math.max(0, ins.expires_at - createdAt),
            expires_at: ins.expires_at,
            delivered_at: null,
            payload: EMPTY_PAYLOAD,
            chunk_ids: JSON.stringify(it.chunkIds),
            size_bytes: it.payload.byteLength,
          };
        });
        undo = this.stagePayloads(items);
        for (let i = 0; i < rows.length; i += CHUNK)
          await tx
            .insertInto('messages')
            .values(rows.slice(i, i + CHUNK))
            .execute();
        return rows.map((r) => r.run_id);
      });
    } catch (e) {
      undo?.();
      if (isUniqueViolation(e)) {
        const text = `${(e as { constraint?: string }).constraint ?? ''} ${(e as Error).message}`;
        throw /reply_to/.test(text)
          ? duplicateReply(items.length === 1 ? items[0]!.replyTo : '')
          : duplicateMessage();
      }
      throw e;
    }
  }

  /** One reply (see pushReplies); returns its run id. */
  async pushReply(nodeId: string, item: ReplyInput): Promise<string> {
    return (await this.pushReplies(nodeId, [item]))[0]!;
  }

  /**
   * The answers to the given instructions of a run, each returned once and then deleted with its
   * instruction: stored replies, and a synthesized error for an unanswered instruction that
   * expired (MESSAGE_EXPIRED) or whose node is offline, deactivated or unregistered
   * (NODE_UNAVAILABLE), so a ServerApp never waits forever on a dead node. Instructions still in
   * flight are left out.
   */
  async pullReplies(
    runId: string,
    instructionIds: string[],
    options: { maxBytes?: number } = {},
  ): Promise<PulledReply[]> {
    const wanted = [...new Set(instructionIds)];
    if (wanted.length === 0) return [];
    const now = this.now();
    const { replies, errors } = await this.batcher.run(async (tx) => {
      const instructions = await inChunks(wanted, (chunk) =>
        tx
          .selectFrom('messages')
          .select(['message_id', 'dst_node_id', 'group_id', 'message_type', 'expires_at', 'delivered_at'])
          .where('kind', '=', 'instruction')
          .where('run_id', '=', runId)
          .where('message_id', 'in', chunk)
          .$if(this.pg, (s) => s.forUpdate())
          .execute(),
      );
      // The replies there are, by size; those within the byte budget are claimed (DELETE …
      // RETURNING: each reply goes to exactly one caller), the others wait for the next pull.
      const present = await inChunks(wanted, (chunk) =>
        tx
          .selectFrom('messages')
          .select(['message_id', 'reply_to', 'size_bytes as size'])
          .where('kind', '=', 'reply')
          .where('run_id', '=', runId)
          .where('reply_to', 'in', chunk)
          .execute(),
      );
      present.sort((a, b) => (a.message_id < b.message_id ? -1 : 1));
      const claim = withinBudget(
        present.map((r) => ({ ...r, size: Number(r.size) })),
        options.maxBytes ?? PULL_BYTE_BUDGET,
      ).map((r) => r.message_id);
      const replies = await inChunks(claim, (chunk) =>
        tx
          .deleteFrom('messages')
          .where('kind', '=', 'reply')
          .where('run_id', '=', runId)
          .where('message_id', 'in', chunk)
          .returningAll()
          .execute(),
      );
      const answered = new Set(replies.map((r) => r.reply_to!));
      // A reply left for the next pull still answers its instruction: no error for it.
      const replied = new Set(present.map((r) => r.reply_to!));
      const errors: SynthesizedErrorReply[] = [];
      for (const ins of instructions) {
        if (replied.has(ins.message_id)) continue;
        const error = this.unanswerable(
          ins.message_id,
          ins.dst_node_id,
          ins.expires_at,
          now,
          ins.delivered_at,
        );
        if (error)
          errors.push({
            kind: 'error',
            runId,
            replyTo: ins.message_id,
            dstNodeId: ins.dst_node_id,
            groupId: ins.group_id,
            messageType: ins.message_type,
            error,
          });
      }
      const done = [...answered, ...errors.map((e) => e.replyTo)];
      for (const id of done) this.payloads.delete(id); // undelivered ones that expired
      await inChunks(done, (chunk) =>
        tx
          .deleteFrom('messages')
          .where('kind', '=', 'instruction')
          .where('message_id', 'in', chunk)
          .execute()
          .then(() => []),
      );
      return { replies, errors };
    });
    const byId = new Map<string, PulledReply>();
    for (const r of replies)
      byId.set(r.reply_to!, toMessage(r, this.takePayload(r.message_id)) as StoredReply);
    for (const e of errors) byId.set(e.replyTo, e);
    return wanted.flatMap((id) => {
      const r = byId.get(id);
      return r ? [r] : [];
    });
  }

  /** Drop every message of a run (at run end). Returns how many were removed. */
  async deleteRunMessages(runId: string): Promise<number> {
    const r = await this.db
      .deleteFrom('messages')
      .where('run_id', '=', runId)
      .returning('message_id')
      .execute();
    for (const { message_id } of r) this.payloads.delete(message_id);
    // Queued counts stay as over-estimates: the next poll of each node recounts.
    return r.length;
  }

  /** Chunk ids still referenced by a stored message: the chunk store keeps these. */
  async liveChunkIds(): Promise<Set<string>> {
    const rows = await this.db
      .selectFrom('messages')
      .select('chunk_ids')
      .where('chunk_ids', '<>', '[]')
      .execute();
    const out = new Set<string>();
    for (const r of rows) for (const id of JSON.parse(r.chunk_ids) as string[]) out.add(id);
    return out;
  }

  private unanswerable(
    messageId: string,
    dst: string,
    expiresAt: number,
    now: number,
    deliveredAt: number | null,
  ): SynthesizedErrorReply['error'] | undefined {
    if (now >= expiresAt)
      return {
        code: 'MESSAGE_EXPIRED',
        reason: `instruction ${messageId} expired before node ${dst} replied`,
      };
    const n = this.nodes.get(dst);
    if (!n) return { code: 'NODE_UNAVAILABLE', reason: `node ${dst} is unknown` };
    if (n.publicKey !== null && !n.registered)
      return { code: 'NODE_UNAVAILABLE', reason: `node ${dst} was unregistered` };
    if (n.deactivatedAt !== null) return { code: 'NODE_UNAVAILABLE', reason: `node ${dst} was deactivated` };
    if (!isOnline(n, now)) return { code: 'NODE_UNAVAILABLE', reason: `node ${dst} went offline` };
    if (deliveredAt !== null && n.restartedAt !== undefined && deliveredAt < n.restartedAt)
      return { code: 'NODE_UNAVAILABLE', reason: `node ${dst} restarted and lost instruction ${messageId}` };
    return undefined;
  }

  /** Keep the payloads of messages being stored; the returned function undoes it (a failed store). */
  private stagePayloads(items: readonly { messageId: string; payload: Uint8Array }[]): () => void {
    const before = items.map((it) => [it.messageId, this.payloads.get(it.messageId)] as const);
    for (const it of items) this.payloads.set(it.messageId, it.payload);
    return () => {
      for (const [id, p] of before) {
        if (p === undefined) this.payloads.delete(id);
        else this.payloads.set(id, p);
      }
    };
  }

  /** A message's payload, forgotten as it is handed out (each message is delivered once). */
  private takePayload(messageId: string): Uint8Array {
    const p = this.payloads.get(messageId);
    this.payloads.delete(messageId);
    return p ?? EMPTY_PAYLOAD;
  }

  private checkPayload(messageId: string, payload: Uint8Array, chunkIds: string[]): void {
    if (!(payload instanceof Uint8Array))
      throw new PollenError('MESSAGE_INVALID', `Message ${messageId} payload must be bytes`);
    if (payload.byteLength > this.maxMessageBytes)
      throw new PollenError(
        'MESSAGE_TOO_LARGE',
        `Message ${messageId} is ${payload.byteLength} bytes; the limit is ${this.maxMessageBytes}`,
        { data: { messageId, sizeBytes: payload.byteLength, maxBytes: this.maxMessageBytes } },
      );
    if (!Array.isArray(chunkIds) || !chunkIds.every((c) => typeof c === 'string' && /^[0-9a-f]{64}$/.test(c)))
      throw new PollenError('MESSAGE_INVALID', `Message ${messageId} chunk ids must be sha256 hex strings`);
  }

  private async requireRunning(tx: Tx, runIds: string[]): Promise<void> {
    for (const runId of runIds) {
      // FOR SHARE: a concurrent transition to finished waits until this batch is stored.
      const run = await tx
        .selectFrom('runs')
        .select('status')
        .where('run_id', '=', runId)
        .$if(this.pg, (s) => s.forShare())
        .executeTakeFirst();
      if (run?.status !== 'running')
        throw new PollenError(
          'RUN_NOT_RUNNING',
          run ? `Run ${runId} is ${run.status}, not running` : `Run ${runId} does not exist`,
          { data: { runId, status: run?.status ?? null } },
        );
    }
  }

  private async refuseExistingIds(tx: Tx, ids: string[]): Promise<void> {
    const existing = await inChunks(ids, (chunk) =>
      tx.selectFrom('messages').select('message_id').where('message_id', 'in', chunk).execute(),
    );
    if (existing.length > 0) throw duplicateMessage(existing[0]!.message_id);
  }

  // ---------------------------------------------------------------------------------------------
  // Logs and metrics

  /** Append log lines to a run; returns the seq of the last one (0 if none were given). */
  appendLogs(runId: string, lines: LogLineInput[]): Promise<number> {
    for (const l of lines)
      if (!LOG_STREAMS.includes(l.stream) || typeof l.text !== 'string')
        throw new PollenError(
          'INVALID_ARGUMENT',
          `A log line needs a stream (${LOG_STREAMS.join(', ')}) and text`,
        );
    const job = this.logChain.then(async () => {
      let next = this.logNext.get(runId);
      if (next === undefined) {
        await this.requireRun(runId);
        const r = await this.db
          .selectFrom('run_logs')
          .select(sql<number | null>`max(seq)`.as('m'))
          .where('run_id', '=', runId)
          .executeTakeFirst();
        next = Number(r?.m ?? 0) + 1;
      }
      if (lines.length === 0) return next - 1;
      const now = this.now();
      const rows = lines.map((l, i) => ({
        run_id: runId,
        seq: next! + i,
        at: l.at ?? now,
        stream: l.stream,
        text: l.text,
      }));
      await this.db.transaction().execute(async (tx) => {
        for (let i = 0; i < rows.length; i += CHUNK)
          await tx
            .insertInto('run_logs')
            .values(rows.slice(i, i + CHUNK))
            .execute();
      });
      this.logNext.set(runId, next + lines.length);
      return next + lines.length - 1;
    });
    this.logChain = job.catch(() => {});
    return job;
  }

  async readLogs(runId: string, options: { afterSeq?: number; limit?: number } = {}): Promise<LogLine[]> {
    return this.db
      .selectFrom('run_logs')
      .select(['seq', 'at', 'stream', 'text'])
      .where('run_id', '=', runId)
      .where('seq', '>', options.afterSeq ?? 0)
      .orderBy('seq')
      .limit(Math.max(1, Math.min(options.limit ?? 1000, 100_000)))
      .execute();
  }

  /**
   * Record a round's metrics. A second call for the same round merges into it (fit and evaluate
   * report separately): metrics by key, node ids as a union, byte counts added.
   */
  async addRoundMetrics(runId: string, input: RoundMetricsInput): Promise<RoundMetrics> {
    if (!Number.isInteger(input.round) || input.round < 0)
      throw new PollenError('INVALID_ARGUMENT', 'The round must be a non-negative integer');
    for (const [k, v] of Object.entries(input.metrics))
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new PollenError('INVALID_ARGUMENT', `Metric ${k} must be a finite number`);
    const now = input.at ?? this.now();
    return this.db.transaction().execute(async (tx) => {
      await this.requireRun(runId, tx);
      const prev = await tx
        .selectFrom('run_metrics')
        .selectAll()
        .where('run_id', '=', runId)
        .where('round', '=', input.round)
        .$if(this.pg, (s) => s.forUpdate())
        .executeTakeFirst();
      const merged: RoundMetrics = {
        round: input.round,
        at: now,
        metrics: { ...(prev ? JSON.parse(prev.metrics) : {}), ...input.metrics },
        nodeIds: [
          ...new Set([...(prev ? (JSON.parse(prev.node_ids) as string[]) : []), ...(input.nodeIds ?? [])]),
        ],
        bytesSent: (prev?.bytes_sent ?? 0) + (input.bytesSent ?? 0),
        bytesReceived: (prev?.bytes_received ?? 0) + (input.bytesReceived ?? 0),
      };
      const row = {
        run_id: runId,
        round: merged.round,
        at: now,
        metrics: JSON.stringify(merged.metrics),
        node_ids: JSON.stringify(merged.nodeIds),
        bytes_sent: merged.bytesSent,
        bytes_received: merged.bytesReceived,
      };
      if (prev)
        await tx
          .updateTable('run_metrics')
          .set(row)
          .where('run_id', '=', runId)
          .where('round', '=', input.round)
          .execute();
      else await tx.insertInto('run_metrics').values(row).execute();
      return merged;
    });
  }

  async listRoundMetrics(runId: string): Promise<RoundMetrics[]> {
    const rows = await this.db
      .selectFrom('run_metrics')
      .selectAll()
      .where('run_id', '=', runId)
      .orderBy('round')
      .execute();
    return rows.map((r) => ({
      round: r.round,
      at: r.at,
      metrics: JSON.parse(r.metrics),
      nodeIds: JSON.parse(r.node_ids),
      bytesSent: r.bytes_sent,
      bytesReceived: r.bytes_received,
    }));
  }

  private async requireRun(runId: string, tx: Tx | Kysely<LinkSchema> = this.db): Promise<void> {
    const r = await tx.selectFrom('runs').select('run_id').where('run_id', '=', runId).executeTakeFirst();
    if (!r) throw unknownRun(runId);
  }

  // ---------------------------------------------------------------------------------------------

  /** Flush liveness and close the store. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.timer);
      try {
        await this.logChain;
        await this.flushLiveness();
      } finally {
        await this.store.close();
      }
    })();
    return this.closed;
  }
}

// -----------------------------------------------------------------------------------------------

function onlineUntil(at: number, intervalMs: number): number {
  return at + 2 * intervalMs + ONLINE_GRACE_MS;
}

function isActive(n: NodeMem): boolean {
  return n.activatedAt !== null && n.deactivatedAt === null && (n.publicKey === null || n.registered);
}

function isOnline(n: NodeMem, now: number): boolean {
  return isActive(n) && now < n.onlineUntil;
}

/** `TYPE BASE64` of an OpenSSH public key line (the comment is not part of the key), or undefined. */
export function normalizeKey(line: string): string | undefined {
  if (typeof line !== 'string') return undefined;
  const [type, data] = line.trim().split(/\s+/);
  if (!type || !data || !/^[a-z0-9][a-z0-9@.-]*$/i.test(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(data))
    return undefined;
  // The key blob starts with its own type as an SSH string: a cheap check that this is a key.
  const blob = Buffer.from(data, 'base64');
  if (blob.length < 4 || blob.subarray(4, 4 + blob.readUInt32BE(0)).toString('latin1') !== type)
    return undefined;
  return `${type} ${data}`;
}

function nodeMem(r: NodeRow): NodeMem {
  return {
    nodeId: r.node_id,
    name: r.name,
    certFingerprint: r.cert_fingerprint,
    publicKey: r.public_key,
    registered: Number(r.registered) === 1,
    heartbeatIntervalMs: r.heartbeat_interval_ms,
    onlineUntil: r.online_until,
    lastSeenAt: r.last_seen_at,
    activatedAt: r.activated_at,
    deactivatedAt: r.deactivated_at,
    site: r.site,
    siteBoundAt: r.site_bound_at,
    siteBoundBy: r.site_bound_by,
  };
}

function toRun(r: RunRow): Run {
  return {
    runId: r.run_id,
    status: r.status,
    subStatus: r.sub_status,
    reason: r.reason,
    fabHash: r.fab_hash,
    fabName: r.fab_name,
    fabVersion: r.fab_version,
    runConfig: JSON.parse(r.run_config),
    federation: r.federation,
    createdBy: r.created_by,
    createdAt: r.created_at,
    pendingAt: r.pending_at,
    startingAt: r.starting_at,
    runningAt: r.running_at,
    finishedAt: r.finished_at,
  };
}

function toMessage(r: MessageRow, payload: Uint8Array): StoredMessage {
  return {
    messageId: r.message_id,
    runId: r.run_id,
    kind: r.kind,
    srcNodeId: r.src_node_id,
    dstNodeId: r.dst_node_id,
    replyTo: r.reply_to,
    groupId: r.group_id,
    messageType: r.message_type,
    createdAt: r.created_at,
    ttlMs: r.ttl_ms,
    expiresAt: r.expires_at,
    payload,
    chunkIds: JSON.parse(r.chunk_ids),
  };
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

async function inChunks<T, R>(items: T[], fn: (chunk: T[]) => Promise<R[]>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(...(await fn(items.slice(i, i + CHUNK))));
  return out;
}

function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return (
    code === '23505' || (typeof code === 'string' && /^SQLITE_CONSTRAINT_(PRIMARYKEY|UNIQUE)$/.test(code))
  );
}

function checkId(what: string, v: unknown): void {
  if (typeof v !== 'string' || v === '' || v.length > 256)
    throw new PollenError('INVALID_ARGUMENT', `${what} must be a string of 1-256 characters`);
}

function checkName(v: unknown): void {
  if (typeof v !== 'string' || v.length > 256)
    throw new PollenError('INVALID_ARGUMENT', 'A node name must be a string of at most 256 characters');
}

function checkInterval(ms: unknown): void {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0 || ms > 24 * 3_600_000)
    throw new PollenError(
      'INVALID_ARGUMENT',
      'The heartbeat interval must be a positive number of milliseconds',
    );
}

function checkMessage(createdAt: unknown, ttlMs: unknown): void {
  if (typeof createdAt !== 'number' || !Number.isFinite(createdAt) || createdAt < 0)
    throw new PollenError('MESSAGE_INVALID', 'Message createdAt must be a time in milliseconds');
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs < 0)
    throw new PollenError('MESSAGE_INVALID', 'Message ttlMs must be a non-negative number');
}

function unknownNode(nodeId: string): PollenError {
  return new PollenError('NODE_UNKNOWN', `Node ${nodeId} is unknown`, { data: { nodeId } });
}

function unknownRun(runId: string): PollenError {
  return new PollenError('RUN_NOT_FOUND', `Run ${runId} does not exist`, { data: { runId } });
}

function notRegistered(nodeId: string): PollenError {
  return new PollenError('NODE_NOT_REGISTERED', `Node ${nodeId} has no registered key`, { data: { nodeId } });
}

function alreadyRegistered(nodeId: string): PollenError {
  return new PollenError(
    'NODE_ALREADY_REGISTERED',
    `This public key is already registered as node ${nodeId}`,
    {
      data: { nodeId },
    },
  );
}

function duplicateMessage(messageId?: string): PollenError {
  return new PollenError(
    'MESSAGE_DUPLICATE',
    messageId ? `Message id ${messageId} is already used` : 'A message id is already used',
    { data: { messageId } },
  );
}

function duplicateReply(replyTo: string): PollenError {
  return new PollenError('REPLY_DUPLICATE', `Instruction ${replyTo} is already answered`, {
    data: { messageId: replyTo },
  });
}
