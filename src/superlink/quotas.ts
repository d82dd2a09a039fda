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

/** The limits a SuperLink enforces; each has a flag of `pollen superlink` (cli/commands/superlink.ts). */
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
}

/**
 * Defaults: far above what an honest node needs (a reply's chunks for a round or two of a
 * large model; a few requests per round; the 1,000-node benchmark never comes near), yet a
 * flood from one node stops at a bounded share.
 */
export const DEFAULT_LIMITS: Readonly<Limits> = {
  nodeChunkQuotaBytes: 4096 * MiB,
  chunkDiskBudgetBytes: 32768 * MiB,
  nodeReplyQueue: 1024,
  nodeReplyQueueBytes: 256 * MiB,
  nodeRatePerSecond: 200,
  nodeBurst: 4000,
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
