/**
 * The SuperLink's resource limits, so that no participant can exhaust what all of them share
 * (docs/federation.md, "Limits"; docs/security.md):
 *
 * - `ByteBudget`: the global budget of chunk bytes on disk (the shared store and run chunks past
 *   the memory budget). Bytes are reserved before they are written and released when the file
 *   goes; past the budget a write is refused with STORAGE_FULL.
 * - `ReplyQueues`: per node, how many of its replies (and how many bytes of them) wait for a
 *   ServerApp to read them; past either cap a reply is refused with REPLY_QUEUE_FULL.
 *
 * The per-node quota on a run's chunks lives with the chunks (relay-chunks.ts), the per-node
 * request rate in rate-limit.ts. Every count here is exact: what is reserved and then not stored
 * is released, so a refusal never leaves the accounts behind.
 */
import { PollenError } from '../errors.js';
import type { ChunkBudget } from '../transport/chunks.js';

const MiB = 1024 * 1024;

/** The limits a SuperLink enforces; each has a flag of `pollen superlink` (cli/superlink/limits.ts). */
export interface Limits {
  /** Bytes of one run's chunks one node may hold on the SuperLink (--node-chunk-quota). */
  nodeChunkQuotaBytes: number;
  /** Bytes of chunk files on disk, shared store and spilled run chunks (--chunk-disk-budget). */
  chunkDiskBudgetBytes: number;
  /** Replies of one node waiting to be read by a ServerApp (--node-reply-queue). */
  nodeReplyQueue: number;
  /** Bytes of those replies (--node-reply-queue-mib). */
  nodeReplyQueueBytes: number;
  /** Fleet requests per second one node may make, sustained (--node-rate). */
  nodeRatePerSecond: number;
  /** Fleet requests one node may make at once above the rate (--node-burst). */
  nodeBurst: number;
  /** Bytes of one artefact a ServerApp saves (--artefact-max-size). */
  artefactMaxBytes: number;
  /** Bytes of all artefacts of one run (--run-artefact-budget). */
  runArtefactBytes: number;
}

/**
 * Defaults: far above what an honest node needs (a reply's chunks for a round or two of a
 * large model; a few requests per round; the 1,000-node benchmark never comes near), yet a
 * flood from one node stops at a bounded share. A run may keep a 1 GiB model and a few
 * checkpoints of it as artefacts.
 */
export const DEFAULT_LIMITS: Readonly<Limits> = {
  nodeChunkQuotaBytes: 4096 * MiB,
  chunkDiskBudgetBytes: 32768 * MiB,
  nodeReplyQueue: 1024,
  nodeReplyQueueBytes: 256 * MiB,
  nodeRatePerSecond: 200,
  nodeBurst: 4000,
  artefactMaxBytes: 1024 * MiB,
  runArtefactBytes: 4096 * MiB,
};

const mib = (n: number): string => `${Math.round((n / MiB) * 10) / 10} MiB`;

/** Bytes held against a limit: reserve before storing, release when the bytes go. */
export class ByteBudget implements ChunkBudget {
  readonly limit: number;
  #used = 0;

  constructor(limit: number) {
    if (!(limit >= 0)) throw new PollenError('INVALID_ARGUMENT', 'A byte budget must be >= 0');
    this.limit = limit;
  }

  get used(): number {
    return this.#used;
  }

  /** Throws STORAGE_FULL unless `bytes` more fit. */
  admit(bytes: number): void {
    if (this.#used + bytes > this.limit)
      throw new PollenError(
        'STORAGE_FULL',
        `The SuperLink's chunk storage is at its budget of ${mib(this.limit)}; ${mib(bytes)} more do not fit`,
        { data: { budgetBytes: this.limit } },
      );
  }

  /** Count `bytes` as used, or throw STORAGE_FULL (nothing counted) if they do not fit. */
  reserve(bytes: number): void {
    this.admit(bytes);
    this.#used += bytes;
  }

  /** Bytes already stored (found on disk at start): counted even past the limit. */
  add(bytes: number): void {
    this.#used += bytes;
  }

  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
  }
}

/**
 * Per node, the replies it pushed that no ServerApp has read yet (they stay in the SuperLink's
 * memory and store until then): at most `maxReplies` of them and `maxBytes` of their payloads.
 * A node can only answer instructions it was sent, but each answer may be up to the message
 * limit, so without this a node with many open instructions could park gigabytes here.
 */
export class ReplyQueues {
  readonly maxReplies: number;
  readonly maxBytes: number;
  /** Per node: replies and bytes counted (stored, or being stored). */
  readonly #nodes = new Map<string, { replies: number; bytes: number }>();
  /** Per run: the stored replies not read yet (message id → node and bytes), released on read. */
  readonly #runs = new Map<string, Map<string, { nodeId: string; bytes: number }>>();

  constructor(limits: Pick<Limits, 'nodeReplyQueue' | 'nodeReplyQueueBytes'>) {
    this.maxReplies = limits.nodeReplyQueue;
    this.maxBytes = limits.nodeReplyQueueBytes;
  }

  /** Replies of every node waiting to be read (the metrics' queue depth). */
  get total(): number {
    let n = 0;
    for (const q of this.#nodes.values()) n += q.replies;
    return n;
  }

  /** What node `nodeId` has waiting. */
  queued(nodeId: string): { replies: number; bytes: number } {
    const q = this.#nodes.get(nodeId);
    return { replies: q?.replies ?? 0, bytes: q?.bytes ?? 0 };
  }

  /** Count a reply of `bytes` before it is stored, or throw REPLY_QUEUE_FULL (nothing counted). */
  reserve(nodeId: string, bytes: number): void {
    const q = this.queued(nodeId);
    if (q.replies + 1 > this.maxReplies || q.bytes + bytes > this.maxBytes)
      throw new PollenError(
        'REPLY_QUEUE_FULL',
        `Node ${nodeId} has ${q.replies} replies (${q.bytes} bytes) waiting to be read; ` +
          `one more of ${bytes} bytes would pass its limit of ${this.maxReplies} replies or ${this.maxBytes} bytes`,
        {
          data: {
            queuedReplies: q.replies,
            queuedBytes: q.bytes,
            maxReplies: this.maxReplies,
            maxBytes: this.maxBytes,
          },
        },
      );
    this.#nodes.set(nodeId, { replies: q.replies + 1, bytes: q.bytes + bytes });
  }

  /** A reserved reply was not stored after all. */
  release(nodeId: string, bytes: number): void {
    const q = this.#nodes.get(nodeId);
    if (!q) return;
    q.replies--;
    q.bytes -= bytes;
    if (q.replies <= 0) this.#nodes.delete(nodeId);
  }

  /** A reserved reply was stored as message `messageId` of `runId`. */
  stored(runId: string, messageId: string, nodeId: string, bytes: number): void {
    const run = this.#runs.get(runId) ?? new Map<string, { nodeId: string; bytes: number }>();
    this.#runs.set(runId, run);
    run.set(messageId, { nodeId, bytes });
  }

  /** The ServerApp read reply `messageId` of `runId`. */
  read(runId: string, messageId: string): void {
    const run = this.#runs.get(runId);
    const held = run?.get(messageId);
    if (!run || !held) return;
    run.delete(messageId);
    if (run.size === 0) this.#runs.delete(runId);
    this.release(held.nodeId, held.bytes);
  }

  /** The run ended: its unread replies are gone. */
  dropRun(runId: string): void {
    const run = this.#runs.get(runId);
    if (!run) return;
    this.#runs.delete(runId);
    for (const { nodeId, bytes } of run.values()) this.release(nodeId, bytes);
  }
}
