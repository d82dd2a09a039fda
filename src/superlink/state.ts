/**
 * LinkState: the SuperLink's durable state over SQLite or PostgreSQL, so a restarted SuperLink
 * keeps its runs, nodes, key registrations and records. One facade over parts with one job each:
 *
 *   node-registry.ts   nodes, registered keys, site bindings, liveness (in memory, flushed in batches)
 *   run-store.ts       runs and their lifecycle, run tokens
 *   message-queue.ts   instructions and replies, each delivered once (payloads in memory)
 *   run-records.ts     log lines and round metrics
 *   run-artefacts.ts   what each run's ServerApp saved (the bytes are in the artefact store)
 *   nonce-store.ts     nonces of signed requests (replays refused across restarts)
 *   service-accounts.ts  pipelines' credentials for the Control API (in memory, written through)
 *   federations.ts     federations, their members and nodes (in memory, written through)
 *   invitations.ts     invitations into federations (single use: a compare-and-set in the store)
 *
 * One SuperLink process owns the store. That is what lets the hot paths stay in memory: node
 * liveness (heartbeats are flushed in batches, not one fsync each), the registered-key map checked
 * on every session open, and a per-node count of queued instructions so an empty poll never
 * touches the database. All of these are rebuilt from the tables at open.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { sql } from 'kysely';
import type { AuditStore } from '../audit/audit-log.js';
import { ServiceAccounts } from '../identity/service-accounts.js';
import { WriteBatcher } from '../store/batcher.js';
import { type Database, openDatabase } from '../store/database.js';
import { Federations } from './federations.js';
import { Invitations } from './invitations.js';
import { DEFAULT_MAX_MESSAGE_BYTES, MessageQueue } from './message-queue.js';
import type { Instruction, InstructionInput, PulledReply, ReplyInput } from './message-rows.js';
import {
  type ActivateNodeInput,
  type NodeInfo,
  NodeRegistry,
  type RegisterNodeKeyInput,
} from './node-registry.js';
import type { SiteBinding } from './node-sites.js';
import { NonceStore } from './nonce-store.js';
import { type ArtefactRecord, RunArtefacts } from './run-artefacts.js';
import {
  type LogLine,
  type LogLineInput,
  type RoundMetrics,
  type RoundMetricsInput,
  RunRecords,
} from './run-records.js';
import { type CreateRunInput, type Run, type RunStatus, RunStore, type RunSubStatus } from './run-store.js';
import { type LinkSchema, linkStateMigrations } from './state-schema.js';
import { DEFAULT_LEASE_TTL_MS, type LeaseState, leaseHolderName, StoreLease } from './store-lease.js';

export { DEFAULT_MAX_MESSAGE_BYTES, PULL_BYTE_BUDGET } from './message-queue.js';
export type {
  Instruction,
  InstructionInput,
  PulledReply,
  ReplyInput,
  StoredMessage,
  StoredReply,
  SynthesizedErrorReply,
} from './message-rows.js';
export {
  type NodeInfo,
  type NodeStatus,
  normalizeKey,
  ONLINE_GRACE_MS,
} from './node-registry.js';
export type { ArtefactRecord } from './run-artefacts.js';
export type { LogLine, LogLineInput, LogStream, RoundMetrics, RoundMetricsInput } from './run-records.js';
export type { CreateRunInput, Run, RunStatus, RunSubStatus } from './run-store.js';

/** Default period of the liveness flush (online_until / last_seen_at) to the store. */
export const DEFAULT_LIVENESS_FLUSH_MS = 5_000;

export interface LinkStateOptions {
  /** A path, `sqlite:PATH`, `:memory:` or `postgres://…` (see openDatabase). */
  url: string;
  now?: () => number;
  /** Largest payload of one message (default 16 MiB). */
  maxMessageBytes?: number;
  /** How often liveness is written to the store (default 5 s; also at close). */
  livenessFlushMs?: number;
  poolSize?: number;
  /** How long the store lease lasts unrenewed (default 30 s; store-lease.ts). */
  leaseTtlMs?: number;
  /** This SuperLink's name in the lease row (default host:pid:random). */
  leaseHolder?: string;
  /** Called when a renewal finds the lease taken by another SuperLink. */
  onLeaseLost?: (holder: string) => void;
  /** The clock of the lease and its renewals (default: `now` and real timers; tests drive it). */
  leaseClock?: LeaseClock;
}

/** A clock for the lease: `sleep` resolves after `ms` on it, or rejects once `signal` aborts. */
export interface LeaseClock {
  now(): number;
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

const timerSleep = (ms: number, signal: AbortSignal): Promise<void> =>
  delay(ms, undefined, { signal, ref: false });

export async function openLinkState(options: LinkStateOptions): Promise<LinkState> {
  const backend = /^postgres(ql)?:\/\//.test(options.url) ? 'postgres' : 'sqlite';
  const store = await openDatabase<LinkSchema>({
    url: options.url,
    migrations: linkStateMigrations(backend),
    poolSize: options.poolSize,
  });
  let lease: StoreLease;
  try {
    lease = await StoreLease.acquire(store.db, {
      holder: options.leaseHolder ?? leaseHolderName(),
      ttlMs: options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
      now: options.leaseClock?.now ?? options.now ?? Date.now,
      location: store.location,
    });
  } catch (e) {
    await store.close();
    throw e;
  }
  const state = new LinkState(store, options, lease);
  try {
    await state.load();
  } catch (e) {
    await state.close();
    throw e;
  }
  return state;
}

export class LinkState {
  private readonly nodes: NodeRegistry;
  private readonly runs: RunStore;
  private readonly messages: MessageQueue;
  private readonly records: RunRecords;
  private readonly artefacts: RunArtefacts;
  /** Nonces of signed requests seen inside the window (replays refused across restarts). */
  readonly nonces: NonceStore;
  /** Service accounts: created, listed and revoked by admins, authenticated on Control API calls. */
  readonly serviceAccounts: ServiceAccounts;
  /** Federations besides `default`: members, nodes (federations.ts). */
  readonly federations: Federations;
  readonly invitations: Invitations;
  private readonly timer: NodeJS.Timeout;
  /** Ends the lease renewals (at close). */
  private readonly leaseRenewals = new AbortController();
  /** Set when a renewal found the lease held by another SuperLink: final. */
  leaseLost = false;
  private closed: Promise<void> | undefined;
  /** The last error of a background liveness flush (retried on the next one). */
  lastFlushError: unknown;

  constructor(
    private readonly store: Database<LinkSchema>,
    options: LinkStateOptions,
    readonly lease: StoreLease,
  ) {
    const db = store.db;
    const pg = store.backend === 'postgres';
    const now = options.now ?? Date.now;
    /**
     * Group commit for the per-node hot writes (activation, delivery, replies): when a thousand
     * nodes act at once, one durable commit covers many of them, each still atomic on its own.
     */
    const batcher = new WriteBatcher(db);
    this.nodes = new NodeRegistry(db, batcher, now);
    this.runs = new RunStore(db, pg, now);
    const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.messages = new MessageQueue(db, batcher, pg, this.nodes, this.runs, maxMessageBytes, now);
    this.records = new RunRecords(db, pg, this.runs, now);
    this.artefacts = new RunArtefacts(db, this.runs, now);
    this.nonces = new NonceStore(db, pg ? undefined : batcher, now);
    this.serviceAccounts = ServiceAccounts.in(db, now);
    this.federations = new Federations(db, now);
    this.invitations = new Invitations(db, this.federations, now);
    this.timer = setInterval(() => {
      this.flushLiveness().catch((e) => {
        this.lastFlushError = e;
      });
    }, options.livenessFlushMs ?? DEFAULT_LIVENESS_FLUSH_MS);
    this.timer.unref();
    void this.renewLease(options.leaseClock?.sleep ?? timerSleep, options.onLeaseLost);
  }

  /**
   * Renew the lease every third of its life. A failed renewal (the store briefly away) is tried
   * again on the next tick; a lease found held by another SuperLink is lost for good, and the
   * liveness flush stops with it (the store is the other SuperLink's now).
   */
  private async renewLease(
    sleep: LeaseClock['sleep'],
    onLost: LinkStateOptions['onLeaseLost'],
  ): Promise<void> {
    const signal = this.leaseRenewals.signal;
    while (!signal.aborted) {
      try {
        await sleep(this.lease.renewEveryMs, signal);
      } catch {
        return; // closed
      }
      const held = await this.lease.renew().catch(() => undefined);
      if (held !== false || signal.aborted) continue;
      this.leaseLost = true;
      clearInterval(this.timer);
      onLost?.(this.lease.holder);
      return;
    }
  }

  /** Whether this SuperLink may still write: its lease held, run out unrenewed, or lost. */
  leaseState(): LeaseState {
    if (this.leaseLost) return { state: 'lost' };
    if (this.lease.expired) return { state: 'expired', since: this.lease.expiresAt };
    return { state: 'held' };
  }

  get backend(): string {
    return this.store.backend;
  }

  /** The store the audit trail shares (its tables are in the same schema). */
  get auditStore(): AuditStore {
    return this.store;
  }

  /** Rebuild the in-memory indexes from the tables. */
  async load(): Promise<void> {
    // Their payloads were in the memory of the previous process, and their runs fail on restart.
    await this.messages.load();
    await this.nonces.sweep();
    await this.nodes.load();
    await this.serviceAccounts.load();
    await this.federations.load();
  }

  // Nodes (node-registry.ts)

  /**
   * Register a SuperNode public key (an admin action); with `site` the key opens sessions only
   * under that client certificate name, without it is bound by its first activation (`bindSite`).
   */
  registerNodeKey(input: RegisterNodeKeyInput): Promise<NodeInfo> {
    return this.nodes.registerNodeKey(input);
  }
  /** The site a registered key is bound to, binding it to `site` on its first use. */
  bindSite(nodeId: string, site: string): Promise<SiteBinding> {
    return this.nodes.bindSite(nodeId, site);
  }
  /**
   * Withdraw a key registration: the node is deactivated and can no longer activate, its
   * unanswered instructions are answered with NODE_UNAVAILABLE errors by pullReplies, and it
   * leaves the federations it was added to.
   */
  async unregisterNode(nodeId: string): Promise<void> {
    await this.nodes.unregisterNode(nodeId);
    this.messages.forgetNode(nodeId);
    await this.federations.forgetNode(nodeId);
  }
  /** The node id of a registered key, from memory (this is checked on every session open). */
  isKeyRegistered(publicKeyLine: string): string | undefined {
    return this.nodes.isKeyRegistered(publicKeyLine);
  }
  /** A node starts (or restarts) a session; an unknown node is created, an unregistered one refused. */
  activateNode(input: ActivateNodeInput): Promise<NodeInfo> {
    return this.nodes.activateNode(input);
  }
  /** In memory only (flushed in batches): false if the node is unknown or not active. */
  heartbeat(nodeId: string, heartbeatIntervalMs: number): boolean {
    return this.nodes.heartbeat(nodeId, heartbeatIntervalMs);
  }
  /** The node ended its session: offline at once (its unanswered instructions get error replies). */
  deactivateNode(nodeId: string): Promise<void> {
    return this.nodes.deactivateNode(nodeId);
  }
  listNodes(): NodeInfo[] {
    return this.nodes.listNodes();
  }
  onlineNodeIds(): string[] {
    return this.nodes.onlineNodeIds();
  }
  getNode(nodeId: string): NodeInfo | undefined {
    return this.nodes.getNode(nodeId);
  }
  /** Write changed liveness (online_until, last_seen_at, interval) in one transaction. */
  flushLiveness(): Promise<void> {
    return this.nodes.flushLiveness();
  }

  // Runs (run-store.ts)

  createRun(input: CreateRunInput): Promise<Run> {
    return this.runs.createRun(input);
  }
  getRun(runId: string): Promise<Run | undefined> {
    return this.runs.getRun(runId);
  }
  /** Newest first; with `federation`, that federation's only. */
  listRuns(options?: { limit?: number; federation?: string }): Promise<Run[]> {
    return this.runs.listRuns(options);
  }
  /** Runs that were not finished: what a restarted SuperLink must resume or fail. */
  /** Runs by state (run-store.ts countByState), for metrics. */
  countRunsByState(): Promise<Record<string, number>> {
    return this.runs.countByState();
  }

  /** Instructions queued for nodes, for metrics. */
  queuedInstructions(): number {
    return this.messages.queuedInstructions();
  }

  /** Answers when the store does: a trivial query (readiness). */
  async ping(): Promise<void> {
    await sql`select 1`.execute(this.store.db);
  }

  unfinishedRuns(): Promise<Run[]> {
    return this.runs.unfinishedRuns();
  }
  /** pending → starting → running → finished, or → finished (failed/stopped); a compare-and-set. */
  transitionRun(
    runId: string,
    to: RunStatus,
    options?: { subStatus?: RunSubStatus; reason?: string },
  ): Promise<Run> {
    return this.runs.transitionRun(runId, to, options);
  }
  /** Store the SHA-256 of the ServerApp's run token (the token itself is never stored). */
  setRunToken(runId: string, token: string): Promise<void> {
    return this.runs.setRunToken(runId, token);
  }
  /** Constant-time check of a run token; false for an unknown run or one without a token. */
  verifyRunToken(runId: string, token: string): Promise<boolean> {
    return this.runs.verifyRunToken(runId, token);
  }

  // Messages (message-queue.ts)

  /** Queue instructions of a running run: the whole batch is checked, then stored at once. */
  pushInstructions(runId: string, items: InstructionInput[]): Promise<void> {
    return this.messages.pushInstructions(runId, items);
  }
  /** A node's undelivered instructions, oldest first, each delivered once. */
  pullInstructions(nodeId: string, options?: { limit?: number; maxBytes?: number }): Promise<Instruction[]> {
    return this.messages.pullInstructions(nodeId, options);
  }
  /** Store a node's replies (checked as a whole); returns each reply's run id. */
  pushReplies(nodeId: string, items: ReplyInput[]): Promise<string[]> {
    return this.messages.pushReplies(nodeId, items);
  }
  /** One reply (see pushReplies); returns its run id. */
  async pushReply(nodeId: string, item: ReplyInput): Promise<string> {
    return (await this.messages.pushReplies(nodeId, [item]))[0]!;
  }
  /** The answers to the given instructions of a run, each once: replies and synthesized errors. */
  pullReplies(
    runId: string,
    instructionIds: string[],
    options?: { maxBytes?: number },
  ): Promise<PulledReply[]> {
    return this.messages.pullReplies(runId, instructionIds, options);
  }
  /** Drop every message of a run (at run end). Returns how many were removed. */
  deleteRunMessages(runId: string): Promise<number> {
    return this.messages.deleteRunMessages(runId);
  }
  /** Chunk ids still referenced by a stored message: the chunk store keeps these. */
  liveChunkIds(): Promise<Set<string>> {
    return this.messages.liveChunkIds();
  }

  // Logs and metrics (run-records.ts)

  /** Append log lines to a run; returns the seq of the last one (0 if none were given). */
  appendLogs(runId: string, lines: LogLineInput[]): Promise<number> {
    return this.records.appendLogs(runId, lines);
  }
  readLogs(runId: string, options?: { afterSeq?: number; limit?: number }): Promise<LogLine[]> {
    return this.records.readLogs(runId, options);
  }
  /** Record a round's metrics; a second report of the same round merges into it. */
  addRoundMetrics(runId: string, input: RoundMetricsInput): Promise<RoundMetrics> {
    return this.records.addRoundMetrics(runId, input);
  }
  listRoundMetrics(runId: string): Promise<RoundMetrics[]> {
    return this.records.listRoundMetrics(runId);
  }

  // Artefacts (run-artefacts.ts)

  /** Record an artefact of a run (its chunks are stored already); one of the same name is replaced. */
  putArtefact(runId: string, artefact: Omit<ArtefactRecord, 'savedAt'>): Promise<ArtefactRecord> {
    return this.artefacts.put(runId, artefact);
  }
  /** A run's artefacts, by name. */
  listArtefacts(runId: string): Promise<ArtefactRecord[]> {
    return this.artefacts.list(runId);
  }
  /** Chunk ids an artefact names: the artefact store keeps these. */
  artefactChunkIds(): Promise<Set<string>> {
    return this.artefacts.liveChunkIds();
  }

  /** Flush liveness and close the store. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.timer);
      this.leaseRenewals.abort();
      try {
        await this.records.settled();
        // A SuperLink that lost its lease writes nothing more: the store is another's.
        if (!this.leaseLost) {
          await this.flushLiveness();
          await this.lease.release();
        }
      } finally {
        await this.store.close();
      }
    })();
    return this.closed;
  }
}
