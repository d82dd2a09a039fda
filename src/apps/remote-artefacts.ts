/**
 * The `context.artefacts` of a ServerApp process: each artefact is checked against the
 * SuperLink's limits first (nothing travels for a refusal), cut into chunks that go to the run's
 * ServerApp scope while they are hashed, then named with SaveArtefact, which verifies and keeps
 * them in the SuperLink's artefact store.
 */
import type { Client } from '@connectrpc/connect';
import type { ServerAppIo, ArtefactLimits as WireLimits } from '../gen/pollen/v1/appio_pb.js';
import {
  type ArtefactData,
  type ArtefactLimits,
  type Artefacts,
  artefactParts,
  checkArtefactFits,
  describeArtefact,
  MAX_RUN_ARTEFACTS,
  type SavedArtefact,
} from '../sdk/artefacts.js';
import { uploadPieces } from '../transport/chunk-transfer.js';
import type { ChunkTransport } from '../transport/chunk-transport.js';
import { CHUNK_SIZE } from '../transport/chunks.js';
import { fromConnectError } from '../transport/errors.js';

/** The limits GetRunInfo announced (none announced: the SuperLink alone decides). */
export function artefactLimitsFromWire(w: WireLimits | undefined): ArtefactLimits {
  const n = (v: bigint | number | undefined) => (v ? Number(v) : Number.POSITIVE_INFINITY);
  return {
    maxBytes: n(w?.maxBytes),
    runMaxBytes: n(w?.runMaxBytes),
    runMaxCount: w?.runMaxCount || MAX_RUN_ARTEFACTS,
  };
}

/**
 * `parts` (one byte string) as pieces of `size` bytes, the last shorter: views where a piece lies
 * within one part, a copy only where it spans two.
 */
export function cutPieces(parts: readonly Uint8Array[], size = CHUNK_SIZE): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const flush = (): void => {
    if (pendingBytes === 0) return;
    pieces.push(pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes));
    pending = [];
    pendingBytes = 0;
  };
  for (const part of parts)
    for (let at = 0; at < part.byteLength; ) {
      const take = Math.min(size - pendingBytes, part.byteLength - at);
      pending.push(part.subarray(at, at + take));
      pendingBytes += take;
      at += take;
      if (pendingBytes === size) flush();
    }
  flush();
  return pieces;
}

export class RemoteArtefacts implements Artefacts {
  readonly #client: Client<typeof ServerAppIo>;
  readonly #chunks: ChunkTransport;
  readonly #runId: string;
  readonly #limits: ArtefactLimits;
  /** What this run saved (name → size): the run's one ServerApp is the only writer. */
  readonly #saved = new Map<string, number>();
  /** Saves run one at a time, so each is checked against the ones before it. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    client: Client<typeof ServerAppIo>,
    chunks: ChunkTransport,
    runId: string,
    limits: ArtefactLimits,
  ) {
    this.#client = client;
    this.#chunks = chunks;
    this.#runId = runId;
    this.#limits = limits;
  }

  save(name: string, data: ArtefactData): Promise<SavedArtefact> {
    const job = this.#queue.then(() => this.#save(name, data));
    this.#queue = job.catch(() => {});
    return job;
  }

  async #save(name: string, data: ArtefactData): Promise<SavedArtefact> {
    const parts = artefactParts(data);
    const size = parts.reduce((n, p) => n + p.byteLength, 0);
    checkArtefactFits(this.#saved, name, size, this.#limits);
    const info = describeArtefact(name, parts);
    try {
      const { ids } = await uploadPieces(this.#chunks, cutPieces(parts), {
        scope: { runId: this.#runId },
        fresh: true,
      });
      await this.#client.saveArtefact({ name, hash: info.hash, size: BigInt(info.size), chunkIds: ids });
    } catch (e) {
      throw fromConnectError(e);
    }
    this.#saved.set(name, info.size);
    return info;
  }
}
