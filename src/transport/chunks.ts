/**
 * Content-addressed chunks: large array data and app bundles travel as pieces named by the
 * lowercase hex SHA-256 of their bytes, so a receiver fetches only what it does not hold and the
 * same model sent to N nodes is uploaded once.
 *
 * Chunking convention (wire.ts relies on it): an array's bytes are cut into pieces of one
 * power-of-two size, the last piece shorter. With n ≥ 2 pieces and nbytes bytes, exactly one
 * power of two S satisfies (n-1)·S < nbytes ≤ n·S, so a receiver knows every piece's offset and
 * length from the array header alone and can fill arrays as pieces arrive in any order.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PollenError } from '../errors.js';

/** Default piece size of chunked arrays: 4 MiB (a power of two). */
export const CHUNK_SIZE = 4 * 1024 * 1024;
/** Arrays of at most this many bytes travel inline in the message: 64 KiB. */
export const INLINE_MAX = 64 * 1024;

const ID_RE = /^[0-9a-f]{64}$/;

/** The id of a chunk: lowercase hex SHA-256 of its bytes. */
export function chunkId(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function isChunkId(s: unknown): s is string {
  return typeof s === 'string' && ID_RE.test(s);
}

export function assertChunkId(id: unknown): asserts id is string {
  if (!isChunkId(id))
    throw new PollenError('CHUNK_ID_INVALID', `Invalid chunk id ${JSON.stringify(String(id).slice(0, 80))}`);
}

/** Throws CHUNK_ID_INVALID, CHUNK_TOO_LARGE or CHUNK_MISMATCH unless `data` is the chunk `id`. */
export function verifyChunk(id: string, data: Uint8Array, maxChunkBytes = Number.POSITIVE_INFINITY): void {
  assertChunkId(id);
  if (!(data instanceof Uint8Array)) throw new PollenError('CHUNK_MISMATCH', `Chunk ${id} has no data`);
  if (data.byteLength > maxChunkBytes)
    throw new PollenError(
      'CHUNK_TOO_LARGE',
      `Chunk ${id} is ${data.byteLength} bytes; at most ${maxChunkBytes} are accepted`,
    );
  if (chunkId(data) !== id)
    throw new PollenError('CHUNK_MISMATCH', `Chunk data does not match its id ${id}`, {
      data: { chunkId: id },
    });
}

/** A run id or node id as chunk scopes name them (also a folder name on the SuperLink). */
export function isScopeName(s: string): boolean {
  return /^[A-Za-z0-9_-]{1,64}$/.test(s);
}

export interface ChunkStore {
  has(id: string): Promise<boolean>;
  /**
   * Throws (a quota, a storage budget) when a chunk of `bytes` could not be stored now, so a
   * receiver refuses it before reading the body. Stores without limits leave it out.
   */
  admit?(bytes: number): void;
  /** The ids among `ids` that the store does not hold (order kept, duplicates removed). */
  missing(ids: string[]): Promise<string[]>;
  /** Store a chunk after checking that `data` hashes to `id`. */
  put(id: string, data: Uint8Array): Promise<void>;
  get(id: string): Promise<Uint8Array | undefined>;
  delete(id: string): Promise<void>;
}

/** A store that can skip hashing for chunks the caller has just verified (saves one SHA-256 pass). */
export interface VerifiedPut {
  putVerified(id: string, data: Uint8Array): Promise<void>;
}

export function hasVerifiedPut(store: object): store is VerifiedPut {
  return typeof (store as Partial<VerifiedPut>).putVerified === 'function';
}

/**
 * A store that keeps chunks as the uploader names them, without hashing them: a relay whose
 * readers verify every chunk themselves (the SuperLink's run chunks, superlink/relay-chunks.ts).
 * Receivers skip their own SHA-256 pass for it.
 */
export interface RelayStore {
  readonly relay: true;
  /** Store a chunk as the frames it arrived in (no copy into one buffer). */
  putFrames(id: string, frames: Uint8Array[], bytes: number): Promise<void>;
}

/** A store that can hand a chunk out as the frames it holds (written out without a copy). */
export interface FramedRead {
  getFrames(id: string): Promise<readonly Uint8Array[] | undefined>;
}

export function hasFramedRead(store: object): store is FramedRead {
  return typeof (store as Partial<FramedRead>).getFrames === 'function';
}

export function isRelayStore(store: object): store is RelayStore {
  return (store as Partial<RelayStore>).relay === true;
}

export interface GcResult {
  removed: number;
  bytes: number;
}

export interface StoreStats {
  chunks: number;
  bytes: number;
}

/** Bytes of storage shared by stores: reserved before a chunk is written, released when it goes. */
export interface ChunkBudget {
  /** Throws (STORAGE_FULL) unless `bytes` more fit. */
  admit(bytes: number): void;
  /** Count `bytes` as used, or throw as admit does (nothing counted). */
  reserve(bytes: number): void;
  release(bytes: number): void;
}

export interface ChunkStoreOptions {
  /** Largest chunk accepted by put (default CHUNK_SIZE). */
  maxChunkBytes?: number;
}

export interface DiskChunkStoreOptions extends ChunkStoreOptions {
  /**
   * Re-hash chunks on get (default true). A corrupted file is then deleted and reported absent,
   * so MissingChunks asks for it again instead of every reader failing on it forever.
   */
  verifyReads?: boolean;
  /** Storage the chunk files count against (the SuperLink's disk budget). */
  budget?: ChunkBudget;
}

function unique(ids: string[]): string[] {
  return [...new Set(ids)];
}

/** Temp files older than this are debris of a crashed put; gc removes them. */
const STALE_TEMP_MS = 60 * 60 * 1000;

/**
 * Chunks as files `dir/ab/abcdef…` (files 0600, folders 0700). Puts write a temp file and rename
 * it into place, so readers never see a partial chunk and concurrent puts of one id are harmless.
 * With a budget, each chunk file counts once from the moment it is placed until it is deleted.
 */
export class DiskChunkStore implements ChunkStore, VerifiedPut {
  readonly dir: string;
  readonly maxChunkBytes: number;
  readonly #verifyReads: boolean;
  readonly #made = new Set<string>();
  readonly #budget: ChunkBudget | undefined;
  /** Chunks being placed: a second put of one id waits for the first (one file, counted once). */
  readonly #placing = new Map<string, Promise<void>>();

  constructor(dir: string, options: DiskChunkStoreOptions = {}) {
    this.dir = dir;
    this.maxChunkBytes = options.maxChunkBytes ?? CHUNK_SIZE;
    this.#verifyReads = options.verifyReads ?? true;
    this.#budget = options.budget;
  }

  admit(bytes: number): void {
    this.#budget?.admit(bytes);
  }

  #path(id: string): string {
    assertChunkId(id);
    return join(this.dir, id.slice(0, 2), id);
  }

  async has(id: string): Promise<boolean> {
    try {
      return (await stat(this.#path(id))).isFile();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  async missing(ids: string[]): Promise<string[]> {
    const list = unique(ids);
    for (const id of list) assertChunkId(id);
    const out: string[] = [];
    // Bounded parallelism: a thousand stats at once would only queue in libuv's pool anyway.
    for (let i = 0; i < list.length; i += 64) {
      const part = list.slice(i, i + 64);
      const held = await Promise.all(part.map((id) => this.has(id)));
      part.forEach((id, k) => {
        if (!held[k]) out.push(id);
      });
    }
    return out;
  }

  async put(id: string, data: Uint8Array): Promise<void> {
    verifyChunk(id, data, this.maxChunkBytes);
    await this.#write(id, data);
  }

  async putVerified(id: string, data: Uint8Array): Promise<void> {
    assertChunkId(id);
    if (data.byteLength > this.maxChunkBytes)
      throw new PollenError('CHUNK_TOO_LARGE', `Chunk ${id} is ${data.byteLength} bytes`);
    await this.#write(id, data);
  }

  /** The file that holds chunk `id` (it may not exist), e.g. to stream it out. */
  pathOf(id: string): string {
    return this.#path(id);
  }

  /**
   * A new temp file name beside where chunk `id` goes (same filesystem, so `adoptVerified` is
   * an atomic rename). For writers that stream a chunk in and hash it on the way (bulk-server.ts);
   * gc removes temp files left behind by crashes.
   */
  async tempPathFor(id: string): Promise<string> {
    assertChunkId(id);
    const sub = join(this.dir, id.slice(0, 2));
    if (!this.#made.has(sub)) {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await mkdir(sub, { recursive: true, mode: 0o700 });
      this.#made.add(sub);
    }
    return join(sub, `.${id}.${randomBytes(6).toString('hex')}.tmp`);
  }

  /** Move a temp file whose bytes the caller verified to hash to `id` into place. */
  async adoptVerified(id: string, temp: string): Promise<void> {
    try {
      const { size } = await stat(temp);
      await this.#place(id, size, (path) => rename(temp, path));
    } finally {
      await rm(temp, { force: true }); // held already, or refused (gone after a rename)
    }
  }

  async #write(id: string, data: Uint8Array): Promise<void> {
    if (await this.has(id)) return; // content-addressed: the file already holds these bytes
    await this.#place(id, data.byteLength, async (path) => {
      const temp = await this.tempPathFor(id);
      try {
        await writeFile(temp, data, { mode: 0o600, flag: 'wx' });
        await rename(temp, path);
      } catch (e) {
        await rm(temp, { force: true });
        throw e;
      }
    });
  }

  /** Put chunk `id` (`bytes` long) in place with `put` unless it is there; one at a time per id. */
  async #place(id: string, bytes: number, put: (path: string) => Promise<void>): Promise<void> {
    for (let prior = this.#placing.get(id); prior; prior = this.#placing.get(id)) await prior.catch(() => {});
    let done!: () => void;
    this.#placing.set(
      id,
      new Promise<void>((resolve) => {
        done = resolve;
      }),
    );
    try {
      if (await this.has(id)) return;
      this.#budget?.reserve(bytes);
      try {
        await put(this.#path(id));
      } catch (e) {
        this.#budget?.release(bytes);
        throw e;
      }
    } finally {
      this.#placing.delete(id);
      done();
    }
  }

  async get(id: string): Promise<Uint8Array | undefined> {
    let data: Buffer;
    try {
      data = await readFile(this.#path(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    if (this.#verifyReads && chunkId(data) !== id) {
      await this.delete(id);
      return undefined;
    }
    return data;
  }

  async delete(id: string): Promise<void> {
    await this.#unlink(this.#path(id));
  }

  /** Remove a chunk file; true if this call removed it (its bytes leave the budget once). */
  async #unlink(path: string, size?: number): Promise<boolean> {
    try {
      const bytes = size ?? (await stat(path)).size;
      await unlink(path);
      this.#budget?.release(bytes);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  async *#files(): AsyncGenerator<{ path: string; name: string; size: number; mtimeMs: number }> {
    let subs: string[];
    try {
      subs = await readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const sub of subs) {
      if (!/^[0-9a-f]{2}$/.test(sub)) continue;
      const names = await readdir(join(this.dir, sub)).catch(() => [] as string[]);
      for (const name of names) {
        const path = join(this.dir, sub, name);
        const st = await stat(path).catch(() => undefined);
        if (st?.isFile()) yield { path, name, size: st.size, mtimeMs: st.mtimeMs };
      }
    }
  }

  /**
   * Delete every chunk not in `live` (and temp files left by crashes). Chunks written less than
   * `minAgeMs` ago are kept, so an upload whose message is not stored yet is not swept away.
   */
  async gc(live: Set<string>, options: { minAgeMs?: number } = {}): Promise<GcResult> {
    const minAgeMs = options.minAgeMs ?? 0;
    const now = Date.now();
    let removed = 0;
    let bytes = 0;
    for await (const f of this.#files()) {
      const temp = f.name.endsWith('.tmp');
      // minAgeMs 0 keeps nothing for its age: a file's mtime has sub-millisecond precision and
      // Date.now() does not, so one written this millisecond would otherwise look younger than 0.
      const young = minAgeMs > 0 && now - f.mtimeMs < minAgeMs;
      if (temp ? now - f.mtimeMs < STALE_TEMP_MS : live.has(f.name) || young) continue;
      if (temp) {
        await rm(f.path, { force: true });
        continue;
      }
      if (!(await this.#unlink(f.path, f.size))) continue;
      removed++;
      bytes += f.size;
    }
    return { removed, bytes };
  }

  async stats(): Promise<StoreStats> {
    let chunks = 0;
    let bytes = 0;
    for await (const f of this.#files()) {
      if (f.name.endsWith('.tmp')) continue;
      chunks++;
      bytes += f.size;
    }
    return { chunks, bytes };
  }
}

/** Chunks in memory, for tests, app processes and the sending side of a transfer. */
export class MemoryChunkStore implements ChunkStore, VerifiedPut {
  readonly maxChunkBytes: number;
  readonly #chunks = new Map<string, Uint8Array>();

  constructor(options: ChunkStoreOptions = {}) {
    this.maxChunkBytes = options.maxChunkBytes ?? CHUNK_SIZE;
  }

  async has(id: string): Promise<boolean> {
    return this.#chunks.has(id);
  }

  async missing(ids: string[]): Promise<string[]> {
    const list = unique(ids);
    for (const id of list) assertChunkId(id);
    return list.filter((id) => !this.#chunks.has(id));
  }

  /** Verifies and copies: the caller may reuse its buffer afterwards. */
  async put(id: string, data: Uint8Array): Promise<void> {
    verifyChunk(id, data, this.maxChunkBytes);
    if (!this.#chunks.has(id)) this.#chunks.set(id, data.slice());
  }

  /** Verified elsewhere; the store keeps `data` itself (no copy), so do not modify it. */
  async putVerified(id: string, data: Uint8Array): Promise<void> {
    this.putView(id, data);
  }

  /**
   * Keep a view without hashing or copying, for chunks we cut ourselves (messageToWire): the
   * caller vouches that `view` hashes to `id` and stays unmodified while stored.
   */
  putView(id: string, view: Uint8Array): void {
    assertChunkId(id);
    if (!this.#chunks.has(id)) this.#chunks.set(id, view);
  }

  async get(id: string): Promise<Uint8Array | undefined> {
    return this.#chunks.get(id);
  }

  async delete(id: string): Promise<void> {
    this.#chunks.delete(id);
  }

  async gc(live: Set<string>): Promise<GcResult> {
    let removed = 0;
    let bytes = 0;
    for (const [id, data] of this.#chunks) {
      if (live.has(id)) continue;
      this.#chunks.delete(id);
      removed++;
      bytes += data.byteLength;
    }
    return { removed, bytes };
  }

  async stats(): Promise<StoreStats> {
    let bytes = 0;
    for (const data of this.#chunks.values()) bytes += data.byteLength;
    return { chunks: this.#chunks.size, bytes };
  }
}
