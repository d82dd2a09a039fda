/**
 * The SuperLink's run chunks: the model updates and global models of runs in progress, which the
 * SuperLink only relays. Two choices make relaying cheap:
 *
 * - **Scoped, not re-hashed.** A chunk uploaded for run R by node N lives in scope (R, N); one the
 *   ServerApp of R uploaded lives in (R, server). The SuperLink stores what the uploader sends
 *   under the id it names, without hashing it, and serves a scope only to the parties of its run:
 *   node N reads (R, server) once it was sent an instruction of R; the ServerApp of R reads
 *   (R, N) for the replies of N. Every reader verifies every chunk against its id (downloadChunks,
 *   messageFromWire), so a node that uploads bytes that do not match their id spoils only its own
 *   reply, and no upload can stand in for another party's chunk. Integrity is end to end; the
 *   SuperLink spends no CPU on SHA-256 for the bulk of the traffic (docs/security.md).
 * - **Memory first.** Chunks stay in memory up to a budget (`--chunk-memory`, default 1 GiB), as
 *   the frames they arrived in (no copy into one buffer: fresh 4 MiB buffers cost page faults and
 *   GC); past it they go to files under STATE_DIR/run-chunks. A run's chunks are dropped when it
 *   finishes.
 *   Runs do not resume after a restart, so neither do their chunks: the folder starts empty.
 *
 * App bundles and uploads that name no run use the verified, shared DiskChunkStore instead.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PollenError } from '../errors.js';
import {
  assertChunkId,
  CHUNK_SIZE,
  type ChunkStore,
  type FramedRead,
  isScopeName,
  type RelayStore,
  type StoreStats,
  type VerifiedPut,
} from '../transport/chunks.js';

/** Default memory budget of run chunks: 1 GiB. */
export const DEFAULT_CHUNK_MEMORY = 1024 * 1024 * 1024;
/** Most bytes of idle chunk buffers kept for reuse. */
const POOL_BYTES = 256 * 1024 * 1024;
/** The uploader name of a run's ServerApp. */
export const SERVER_SCOPE = 'server';

export interface RelayChunksOptions {
  /** Folder for chunks past the memory budget (emptied on start). */
  dir: string;
  /** Bytes of chunks held in memory before they go to files. */
  memoryBytes?: number;
  /** Largest chunk accepted. */
  maxChunkBytes?: number;
  /** The clock of last uses (tests). */
  now?: () => number;
}

export class RelayChunks {
  readonly #dir: string;
  readonly #budget: number;
  readonly maxChunkBytes: number;
  /** `${run}/${uploader}/${id}` → the chunk's frames and their total size. */
  readonly #memory = new Map<string, { frames: readonly Uint8Array[]; bytes: number }>();
  /** Keys of chunks in files, per run (so has() needs no stat and a run's files go at once). */
  readonly #onDisk = new Map<string, Set<string>>();
  #memoryBytes = 0;
  /**
   * Full-size chunk buffers to reuse: copying a chunk's frames into a buffer that is already
   * mapped costs less than keeping thousands of 16 KiB frames (old-space GC) or mapping a fresh
   * 4 MiB buffer per chunk (page faults, external-memory GCs).
   */
  readonly #pool: Buffer[] = [];
  readonly #pooled = new WeakSet<Uint8Array>();
  readonly #poolMax: number;
  /** When each chunk was last stored, asked about or read (sweep keeps what is in use). */
  readonly #used = new Map<string, number>();
  readonly #now: () => number;

  constructor(o: RelayChunksOptions) {
    this.#dir = o.dir;
    this.#budget = o.memoryBytes ?? DEFAULT_CHUNK_MEMORY;
    this.maxChunkBytes = o.maxChunkBytes ?? CHUNK_SIZE;
    this.#now = o.now ?? Date.now;
    this.#poolMax = Math.floor(Math.min(this.#budget, POOL_BYTES) / this.maxChunkBytes);
    rmSync(o.dir, { recursive: true, force: true });
  }

  /** The chunks one party uploads for a run: stored as sent, never hashed here. */
  scope(runId: string, uploader: string): ChunkStore & VerifiedPut & RelayStore & FramedRead {
    const prefix = scopeKey(runId, uploader);
    return {
      relay: true,
      has: async (id) => this.#has(`${prefix}/${id}`),
      missing: async (ids) => [...new Set(ids)].filter((id) => !this.#has(`${prefix}/${id}`)),
      put: (id, data) => this.#put(runId, prefix, id, [data], data.byteLength),
      putVerified: (id, data) => this.#put(runId, prefix, id, [data], data.byteLength),
      putFrames: (id, frames, bytes) => this.#put(runId, prefix, id, frames, bytes),
      get: async (id) => joined(await this.#frames(runId, `${prefix}/${id}`)),
      getFrames: (id) => this.#frames(runId, `${prefix}/${id}`),
      delete: (id) => this.#delete(runId, `${prefix}/${id}`),
    };
  }

  /**
   * What a reader may see: the scopes `uploaders` of `runId`, in order, then `shared` (bundles,
   * uploads that named no run). Read-only: puts go to a scope.
   */
  reader(runId: string, uploaders: string[], shared: ChunkStore): ChunkStore & FramedRead {
    const prefixes = uploaders.map((u) => scopeKey(runId, u));
    const local = (id: string): string | undefined =>
      prefixes.map((p) => `${p}/${id}`).find((k) => this.#has(k));
    return {
      has: async (id) => local(id) !== undefined || (await shared.has(id)),
      missing: async (ids) => shared.missing([...new Set(ids)].filter((id) => local(id) === undefined)),
      put: async () => {
        throw new PollenError('INTERNAL', 'A chunk reader cannot store chunks');
      },
      get: async (id) => {
        const key = local(id);
        return key === undefined ? shared.get(id) : joined(await this.#frames(runId, key));
      },
      getFrames: async (id) => {
        const key = local(id);
        if (key !== undefined) return this.#frames(runId, key);
        const data = await shared.get(id);
        return data && [data];
      },
      delete: async () => {
        throw new PollenError('INTERNAL', 'A chunk reader cannot delete chunks');
      },
    };
  }

  /** Forget every chunk of a run (it finished). */
  async dropRun(runId: string): Promise<void> {
    const prefix = `${runId}/`;
    for (const key of this.#used.keys()) if (key.startsWith(prefix)) this.#used.delete(key);
    for (const [key, held] of this.#memory)
      if (key.startsWith(prefix)) {
        this.#memory.delete(key);
        this.#memoryBytes -= held.bytes;
        this.#release(held);
      }
    if (this.#onDisk.delete(runId)) await rm(join(this.#dir, runId), { recursive: true, force: true });
  }

  stats(): StoreStats & { memoryBytes: number; onDisk: number } {
    let onDisk = 0;
    for (const s of this.#onDisk.values()) onDisk += s.size;
    return {
      chunks: this.#memory.size + onDisk,
      bytes: this.#memoryBytes,
      memoryBytes: this.#memoryBytes,
      onDisk,
    };
  }

  #has(key: string): boolean {
    const run = key.slice(0, key.indexOf('/'));
    const held = this.#memory.has(key) || (this.#onDisk.get(run)?.has(key) ?? false);
    if (held) this.#used.set(key, this.#now());
    return held;
  }

  /**
   * Drop the chunks of runs in progress that no stored message names and nobody used for
   * `idleMs`: a reply's chunks once the ServerApp pulled and read it, an instruction's once its
   * node did. A chunk asked about (MissingChunks) or read is in use again, so a node that skips
   * an upload because the chunk is held has `idleMs` to push the message naming it.
   */
  async sweep(live: ReadonlySet<string>, idleMs: number): Promise<number> {
    const now = this.#now();
    let removed = 0;
    for (const [key, at] of [...this.#used]) {
      if (now - at < idleMs || live.has(key.slice(key.lastIndexOf('/') + 1))) continue;
      const run = key.slice(0, key.indexOf('/'));
      await this.#delete(run, key);
      removed++;
    }
    return removed;
  }

  async #put(
    runId: string,
    prefix: string,
    id: string,
    frames: readonly Uint8Array[],
    bytes: number,
  ): Promise<void> {
    assertChunkId(id);
    if (bytes > this.maxChunkBytes)
      throw new PollenError(
        'CHUNK_TOO_LARGE',
        `Chunk ${id} is ${bytes} bytes; at most ${this.maxChunkBytes} are accepted`,
      );
    const key = `${prefix}/${id}`;
    if (this.#has(key)) return;
    this.#used.set(key, this.#now());
    if (this.#memoryBytes + bytes <= this.#budget) {
      this.#memory.set(key, { frames: this.#compact(frames, bytes), bytes });
      this.#memoryBytes += bytes;
      return;
    }
    const path = join(this.#dir, key);
    await mkdir(join(this.#dir, prefix), { recursive: true, mode: 0o700 });
    const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(temp, 'wx', 0o600);
    try {
      await fh.writev(frames as Uint8Array[]);
    } finally {
      await fh.close();
    }
    await rename(temp, path);
    const keys = this.#onDisk.get(runId) ?? new Set<string>();
    this.#onDisk.set(runId, keys);
    keys.add(key);
  }

  /** Many frames of a full-size chunk → one pooled buffer; anything else is kept as it is. */
  #compact(frames: readonly Uint8Array[], bytes: number): readonly Uint8Array[] {
    if (frames.length === 1 || bytes !== this.maxChunkBytes) return frames;
    const buf = this.#pool.pop() ?? Buffer.allocUnsafeSlow(bytes);
    this.#pooled.add(buf);
    let at = 0;
    for (const f of frames) {
      buf.set(f, at);
      at += f.byteLength;
    }
    return [buf];
  }

  #release(held: { frames: readonly Uint8Array[] }): void {
    const buf = held.frames[0];
    if (held.frames.length === 1 && buf && this.#pooled.has(buf) && this.#pool.length < this.#poolMax)
      this.#pool.push(buf as Buffer);
  }

  async #frames(runId: string, key: string): Promise<readonly Uint8Array[] | undefined> {
    const held = this.#memory.get(key);
    if (held) {
      this.#used.set(key, this.#now());
      return held.frames;
    }
    if (!this.#onDisk.get(runId)?.has(key)) return undefined;
    this.#used.set(key, this.#now());
    try {
      return [await readFile(join(this.#dir, key))];
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async #delete(runId: string, key: string): Promise<void> {
    this.#used.delete(key);
    const held = this.#memory.get(key);
    if (held) {
      this.#memory.delete(key);
      this.#memoryBytes -= held.bytes;
      this.#release(held);
    }
    if (this.#onDisk.get(runId)?.delete(key)) await rm(join(this.#dir, key), { force: true });
  }
}

function joined(frames: readonly Uint8Array[] | undefined): Uint8Array | undefined {
  if (!frames) return undefined;
  return frames.length === 1 ? frames[0] : Buffer.concat(frames);
}

/** `RUN/server` or `RUN/n-NODE`: also the folder of the scope's files. */
function scopeKey(runId: string, uploader: string): string {
  if (!isScopeName(runId)) throw new PollenError('INVALID_ARGUMENT', 'Invalid run id for chunks');
  if (!isScopeName(uploader)) throw new PollenError('INTERNAL', 'Invalid chunk uploader');
  return `${runId}/${uploader === SERVER_SCOPE ? uploader : `n-${uploader}`}`;
}
