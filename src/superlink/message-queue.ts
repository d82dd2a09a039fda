/**
 * The message queue: instructions a ServerApp sends to nodes and the nodes' replies, each
 * delivered once. Rows in the store hold routing, expiry, chunk ids and size; the payload bytes
 * stay in memory, because they only matter to a run in progress and a run does not survive a
 * SuperLink restart (its messages are dropped at open). Writing each 40 KB model into the store
 * and reading it back cost about a quarter of the SuperLink's CPU in a 1,000-node round
 * (docs/benchmarks.md).
 *
 * A per-node count of queued instructions answers an empty poll without touching the store.
 */
import { sql } from 'kysely';
import { PollenError } from '../errors.js';
import type { WriteBatcher } from '../store/batcher.js';
import { isUniqueViolation } from '../store/database.js';
import {
  checkPayload,
  checkTiming,
  duplicateMessage,
  duplicateReply,
  EMPTY_PAYLOAD,
  type Instruction,
  type InstructionInput,
  instructionRow,
  type MessageRow,
  type PulledReply,
  type ReplyInput,
  replyRow,
  type StoredReply,
  type SynthesizedErrorReply,
  toMessage,
  withinBudget,
} from './message-rows.js';
import { isActive, type NodeRegistry } from './node-registry.js';
import type { RunStore } from './run-store.js';
import { checkId, inChunks, type LinkDb, type Tx, unknownNode } from './state-common.js';
import type { LinkSchema } from './state-schema.js';

/** Default bound on one stored message payload; large arrays travel as chunks. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/**
 * Most payload bytes one pull claims (instructions for a node, replies for a ServerApp): one
 * stored message is at most DEFAULT_MAX_MESSAGE_BYTES, so an answer stays under the RPC limit
 * (32 MiB). What is left stays queued for the next pull instead of being claimed and lost.
 */
export const PULL_BYTE_BUDGET = 16 * 1024 * 1024;

/**
 * Queued-instruction hint per node: `count` is never below the number of deliverable instructions
 * (an over-estimate costs one query, which corrects it). `epoch` moves on every push so a pull
 * that raced a push does not overwrite its increment with a stale recount.
 */
interface Queued {
  count: number;
  epoch: number;
}

export class MessageQueue {
  /** The payloads of stored messages, by message id. */
  private readonly payloads = new Map<string, Uint8Array>();
  private readonly queued = new Map<string, Queued>();

  constructor(
    private readonly db: LinkDb,
    /** Group commit: a thousand nodes pulling or replying at once share a few durable commits. */
    private readonly batcher: WriteBatcher<LinkSchema>,
    /** PostgreSQL: row locks (concurrent pulls skip each other's rows); SQLite has one writer. */
    private readonly pg: boolean,
    /** Who may receive an instruction, and who can still answer one. */
    private readonly nodes: Pick<NodeRegistry, 'peek' | 'unavailable'>,
    /** Messages are stored only for running runs. */
    private readonly runs: Pick<RunStore, 'requireRunning'>,
    private readonly maxMessageBytes: number,
    private readonly now: () => number,
  ) {}

  /** Drop the messages of the previous process (their payloads were in its memory) and count. */
  /** Instructions queued for all nodes (each node's count may briefly run ahead of its rows). */
  queuedInstructions(): number {
    let n = 0;
    for (const q of this.queued.values()) n += q.count;
    return n;
  }

  async load(): Promise<void> {
    await this.db.deleteFrom('messages').execute();
    const counts = await this.db
      .selectFrom('messages')
      .select(['dst_node_id', sql<number>`count(*)`.as('n')])
      .where('kind', '=', 'instruction')
      .where('delivered_at', 'is', null)
      .groupBy('dst_node_id')
      .execute();
    for (const c of counts) this.queued.set(c.dst_node_id, { count: Number(c.n), epoch: 0 });
  }

  /**
   * Queue instructions of a running run. The whole batch is checked (run running, destinations
   * known, ids new, sizes) before anything is stored, then stored in one transaction.
   */
  async pushInstructions(runId: string, items: InstructionInput[]): Promise<void> {
    if (items.length === 0) return;
    const ids = new Set<string>();
    for (const it of items) {
      checkId('messageId', it.messageId);
      checkTiming(it.createdAt, it.ttlMs);
      checkPayload(it.messageId, it.payload, it.chunkIds, this.maxMessageBytes);
      if (ids.has(it.messageId)) throw duplicateMessage(it.messageId);
      ids.add(it.messageId);
      const n = this.nodes.peek(it.dstNodeId);
      // A node whose key registration was withdrawn can never pull again.
      if (!n || (n.publicKey !== null && !n.registered)) throw unknownNode(it.dstNodeId);
    }
    try {
      await this.store(items, async (tx) => {
        await this.runs.requireRunning(tx, [runId]);
        await this.refuseExistingIds(tx, [...ids]);
        return items.map((it) => instructionRow(runId, it));
      });
    } catch (e) {
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
    const n = this.nodes.peek(nodeId);
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
    if (!this.nodes.peek(nodeId)) throw unknownNode(nodeId);
    const ids = new Set<string>();
    const answered = new Set<string>();
    for (const it of items) {
      checkId('messageId', it.messageId);
      checkId('replyTo', it.replyTo);
      checkPayload(it.messageId, it.payload, it.chunkIds, this.maxMessageBytes);
      if (ids.has(it.messageId)) throw duplicateMessage(it.messageId);
      if (answered.has(it.replyTo)) throw duplicateReply(it.replyTo);
      ids.add(it.messageId);
      answered.add(it.replyTo);
    }
    const now = this.now();
    try {
      const rows = await this.store(items, async (tx) => {
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
        await this.runs.requireRunning(tx, [...new Set(found.map((r) => r.run_id))]);
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
        return items.map((it) => replyRow(nodeId, byId.get(it.replyTo)!, it, now));
      });
      return rows.map((r) => r.run_id);
    } catch (e) {
      if (isUniqueViolation(e)) {
        const text = `${(e as { constraint?: string }).constraint ?? ''} ${(e as Error).message}`;
        throw /reply_to/.test(text)
          ? duplicateReply(items.length === 1 ? items[0]!.replyTo : '')
          : duplicateMessage();
      }
      throw e;
    }
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
        const error = this.unanswerable(ins, now);
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

  /** Forget a node's queued count (it can never pull again). */
  forgetNode(nodeId: string): void {
    this.queued.delete(nodeId);
  }

  /**
   * Store the rows `build` makes, inside one group-committed transaction, with their payloads
   * kept in memory from just before the insert (a failed store forgets them again).
   */
  private async store(
    items: readonly { messageId: string; payload: Uint8Array }[],
    build: (tx: Tx) => Promise<MessageRow[]>,
  ): Promise<MessageRow[]> {
    let undo: (() => void) | undefined;
    try {
      return await this.batcher.run(async (tx) => {
        const rows = await build(tx);
        undo = this.stagePayloads(items);
        await inChunks(rows, (chunk) =>
          tx
            .insertInto('messages')
            .values(chunk)
            .execute()
            .then(() => []),
        );
        return rows;
      });
    } catch (e) {
      undo?.();
      throw e;
    }
  }

  private unanswerable(
    ins: { message_id: string; dst_node_id: string; expires_at: number; delivered_at: number | null },
    now: number,
  ): SynthesizedErrorReply['error'] | undefined {
    if (now >= ins.expires_at)
      return {
        code: 'MESSAGE_EXPIRED',
        reason: `instruction ${ins.message_id} expired before node ${ins.dst_node_id} replied`,
      };
    const reason = this.nodes.unavailable(ins.dst_node_id, now, ins.delivered_at, ins.message_id);
    return reason === undefined ? undefined : { code: 'NODE_UNAVAILABLE', reason };
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

  private async refuseExistingIds(tx: Tx, ids: string[]): Promise<void> {
    const existing = await inChunks(ids, (chunk) =>
      tx.selectFrom('messages').select('message_id').where('message_id', 'in', chunk).execute(),
    );
    if (existing.length > 0) throw duplicateMessage(existing[0]!.message_id);
  }
}
