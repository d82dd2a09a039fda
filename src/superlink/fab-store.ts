/**
 * The SuperLink's app bundles (FABs): a record per bundle (hash, size, chunk ids, name,
 * version) kept as a file in `<state>/fabs/`, its bytes in the shared chunk store. A bundle is
 * registered only once its chunks are all there and add up to its hash and size.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { PollenError } from '../errors.js';
import { type Fab, FabSchema } from '../gen/pollen/v1/records_pb.js';
import type { ChunkStore } from '../transport/chunks.js';
import { writeFileAtomic } from '../util/files.js';

const HASH = /^sha256:[0-9a-f]{64}$/;

export class FabStore {
  readonly #dir: string;
  readonly #chunks: ChunkStore;

  /** Bundles in `dir` (made if missing, mode 0700), their bytes in `chunks`. */
  constructor(dir: string, chunks: ChunkStore) {
    this.#dir = dir;
    this.#chunks = chunks;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** Checks the bundle's chunks against its hash and size, then keeps its record. */
  async register(fab: Fab): Promise<Fab> {
    if (!HASH.test(fab.hash)) throw new PollenError('BUNDLE_INVALID', 'The bundle hash must be sha256:HEX');
    const missing = await this.#chunks.missing(fab.chunkIds);
    if (missing.length > 0)
      throw new PollenError('CHUNK_MISSING', `Push the bundle's ${missing.length} missing chunks first`, {
        data: { missing: missing.slice(0, 10) },
      });
    const hash = createHash('sha256');
    let size = 0;
    for (const id of fab.chunkIds) {
      const data = await this.#chunks.get(id);
      if (!data) throw new PollenError('CHUNK_MISSING', `Chunk ${id} is missing`);
      hash.update(data);
      size += data.byteLength;
    }
    if (`sha256:${hash.digest('hex')}` !== fab.hash || size !== Number(fab.size))
      throw new PollenError('BUNDLE_INVALID', 'The bundle chunks do not add up to its hash and size');
    const record = create(FabSchema, {
      hash: fab.hash,
      size: BigInt(size),
      chunkIds: fab.chunkIds,
      name: fab.name,
      version: fab.version,
    });
    writeFileAtomic(this.#path(fab.hash), toBinary(FabSchema, record), 0o600);
    return record;
  }

  /** The record of bundle `hash`, or BUNDLE_NOT_FOUND. */
  async get(hash: string): Promise<Fab> {
    if (!HASH.test(hash) || !existsSync(this.#path(hash)))
      throw new PollenError('BUNDLE_NOT_FOUND', `No app bundle ${hash}`);
    return fromBinary(FabSchema, readFileSync(this.#path(hash)));
  }

  /** The bundle's bytes, reassembled from its chunks (bundles are small: code and assets). */
  async bytes(hash: string): Promise<Uint8Array> {
    const fab = await this.get(hash);
    const parts: Uint8Array[] = [];
    for (const id of fab.chunkIds) {
      const data = await this.#chunks.get(id);
      if (!data) throw new PollenError('CHUNK_MISSING', `Chunk ${id} of bundle ${hash} is missing`);
      parts.push(data);
    }
    return Buffer.concat(parts);
  }

  /** Adds the chunk ids of every registered bundle to `live` (garbage collection keeps them). */
  addChunkIds(live: Set<string>): void {
    for (const file of readdirSync(this.#dir))
      if (file.endsWith('.bin'))
        for (const id of fromBinary(FabSchema, readFileSync(join(this.#dir, file))).chunkIds) live.add(id);
  }

  #path(hash: string): string {
    return join(this.#dir, `${hash.replace(':', '-')}.bin`);
  }
}
