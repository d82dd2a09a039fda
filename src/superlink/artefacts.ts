/**
 * The SuperLink's artefact store: what each run's ServerApp saved (the final model, metrics,
 * plots), kept after the run for `pollen pull`.
 *
 * A ServerApp pushes an artefact's chunks into its run's scope (relay-chunks.ts, where nothing is
 * hashed), then names them with SaveArtefact. Here each chunk is verified against its id as it is
 * copied into a content-addressed DiskChunkStore under STATE_DIR/artefacts (files 0600, counted
 * against the chunk disk budget), the whole against the artefact's SHA-256 and size, and only
 * then is the artefact recorded with the run (run-artefacts.ts). The limits (one artefact's size,
 * a run's bytes and count) are checked before any chunk is read. Chunks no artefact names (one
 * replaced, a save that failed half way) are collected with the shared ones (collector.ts).
 *
 * Reads are scoped to a run: an admin's download names the run (the pollen-chunk-run header) and
 * sees only the chunks of that run's artefacts.
 */
import { createHash } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { PollenError } from '../errors.js';
import { type Artefact, ArtefactSchema } from '../gen/pollen/v1/records_pb.js';
import { type ArtefactLimits, checkArtefactFits, MAX_RUN_ARTEFACTS } from '../sdk/artefacts.js';
import { CHUNK_RUN_HEADER } from '../transport/bulk-protocol.js';
import {
  assertChunkId,
  type ChunkBudget,
  type ChunkStore,
  DiskChunkStore,
  type GcResult,
} from '../transport/chunks.js';
import type { ArtefactRecord, LinkState } from './state.js';

/** An artefact as the wire shows it. */
export function artefactToWire(r: ArtefactRecord): Artefact {
  return create(ArtefactSchema, {
    name: r.name,
    size: BigInt(r.size),
    hash: r.hash,
    chunkIds: r.chunkIds,
    savedAt: BigInt(r.savedAt),
  });
}

export interface SaveArtefactInput {
  name: string;
  /** `sha256:HEX` of the whole artefact. */
  hash: string;
  size: number;
  chunkIds: string[];
}

export interface ArtefactStoreOptions {
  /** Folder of the artefacts' chunks (STATE_DIR/artefacts). */
  dir: string;
  state: LinkState;
  /** The SuperLink's chunk disk budget, shared with the other chunk stores. */
  budget?: ChunkBudget;
  /** Largest artefact and most bytes per run; the count is MAX_RUN_ARTEFACTS. */
  maxBytes: number;
  runMaxBytes: number;
  /** Largest chunk accepted (default: the store's, 4 MiB). */
  maxChunkBytes?: number;
}

export class ArtefactStore {
  readonly chunks: DiskChunkStore;
  readonly limits: ArtefactLimits;
  readonly #state: LinkState;
  /** Saves of one run run one at a time, so each is checked against the ones before it. */
  readonly #queues = new Map<string, Promise<unknown>>();
  /**
   * Saves and collection exclude each other: a save may find a chunk it needs already stored
   * yet named by no artefact (one replaced), which a collection running meanwhile would delete.
   */
  #saving = 0;
  #collecting: Promise<unknown> | undefined;

  constructor(o: ArtefactStoreOptions) {
    this.chunks = new DiskChunkStore(o.dir, { budget: o.budget, maxChunkBytes: o.maxChunkBytes });
    this.#state = o.state;
    this.limits = { maxBytes: o.maxBytes, runMaxBytes: o.runMaxBytes, runMaxCount: MAX_RUN_ARTEFACTS };
  }

  /**
   * Keep artefact `a` of run `runId`, its chunks read from `source` (the run's ServerApp scope):
   * each verified and stored, the whole checked against `a.hash` and `a.size`, then recorded.
   */
  save(runId: string, a: SaveArtefactInput, source: ChunkStore): Promise<ArtefactRecord> {
    const prior = this.#queues.get(runId) ?? Promise.resolve();
    const job = prior.then(async () => {
      while (this.#collecting) await this.#collecting;
      this.#saving++;
      try {
        return await this.#save(runId, a, source);
      } finally {
        this.#saving--;
      }
    });
    const settled = job.catch(() => {});
    this.#queues.set(runId, settled);
    // The queue of a run goes once its last save settles.
    void settled.then(() => {
      if (this.#queues.get(runId) === settled) this.#queues.delete(runId);
    });
    return job;
  }

  async #save(runId: string, a: SaveArtefactInput, source: ChunkStore): Promise<ArtefactRecord> {
    if (!/^sha256:[0-9a-f]{64}$/.test(a.hash))
      throw new PollenError('INVALID_REQUEST', 'The artefact hash must be sha256:HEX (lowercase)');
    if (!Number.isSafeInteger(a.size) || a.size < 0)
      throw new PollenError('INVALID_REQUEST', 'The artefact size must be a whole number of bytes');
    const saved = new Map((await this.#state.listArtefacts(runId)).map((r) => [r.name, r.size]));
    checkArtefactFits(saved, a.name, a.size, this.limits);
    // Pieces of one size, the last shorter: a reader knows where each goes from its position.
    const piece = this.chunks.maxChunkBytes;
    const count = Math.ceil(a.size / piece);
    if (a.chunkIds.length !== count)
      throw new PollenError(
        'ARTEFACT_INVALID',
        `Artefact "${a.name}" of ${a.size} bytes is ${count} chunks of ${piece} bytes (the last shorter), not ${a.chunkIds.length}`,
      );
    for (const id of a.chunkIds) assertChunkId(id);
    const hash = createHash('sha256');
    for (const [i, id] of a.chunkIds.entries()) {
      const data = (await source.get(id)) ?? (await this.chunks.get(id));
      if (!data)
        throw new PollenError(
          'CHUNK_MISSING',
          `Push the chunks of artefact "${a.name}" first: ${id} is missing`,
          {
            data: { chunkIds: [id] },
          },
        );
      const expected = i < count - 1 ? piece : a.size - piece * (count - 1);
      if (data.byteLength !== expected)
        throw new PollenError(
          'ARTEFACT_INVALID',
          `Chunk ${i} of artefact "${a.name}" is ${data.byteLength} bytes, not ${expected}`,
        );
      // put verifies the chunk against its id (CHUNK_MISMATCH) and counts it against the budget.
      await this.chunks.put(id, data);
      hash.update(data);
    }
    if (`sha256:${hash.digest('hex')}` !== a.hash)
      throw new PollenError(
        'ARTEFACT_INVALID',
        `The chunks of artefact "${a.name}" do not add up to its SHA-256`,
      );
    return this.#state.putArtefact(runId, { name: a.name, hash: a.hash, size: a.size, chunkIds: a.chunkIds });
  }

  /**
   * What an admin may read: the chunks of run `runId`'s artefacts (the run named in the
   * pollen-chunk-run header), nothing else.
   */
  async reader(runId: string | undefined): Promise<ChunkStore> {
    if (!runId)
      throw new PollenError(
        'CHUNK_RUN_REQUIRED',
        `Artefact chunks are read per run: name the run in the ${CHUNK_RUN_HEADER} header`,
      );
    const ids = new Set((await this.#state.listArtefacts(runId)).flatMap((r) => r.chunkIds));
    const store = this.chunks;
    const outside = (id: string) =>
      new PollenError('CHUNK_SCOPE_DENIED', `Chunk ${id} belongs to no artefact of run ${runId}`);
    return {
      has: async (id) => ids.has(id) && (await store.has(id)),
      missing: async (list) => {
        for (const id of list) if (!ids.has(id)) throw outside(id);
        return store.missing(list);
      },
      get: async (id) => {
        if (!ids.has(id)) throw outside(id);
        return store.get(id);
      },
      put: async () => {
        throw new PollenError('METHOD_NOT_ALLOWED', 'Artefacts are saved by their ServerApp');
      },
      delete: async () => {
        throw new PollenError('METHOD_NOT_ALLOWED', 'Artefacts are saved by their ServerApp');
      },
    };
  }

  /** Delete chunks no artefact names, written more than `minAgeMs` ago (a save in progress). */
  async collect(minAgeMs: number): Promise<GcResult> {
    if (this.#saving > 0 || this.#collecting) return { removed: 0, bytes: 0 }; // next time
    const pass = (async () => this.chunks.gc(await this.#state.artefactChunkIds(), { minAgeMs }))();
    this.#collecting = pass.catch(() => {});
    try {
      return await pass;
    } finally {
      this.#collecting = undefined;
    }
  }
}
