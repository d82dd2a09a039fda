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
 *   GC); past it they go to files under STATE_DIR/run-chunks, which count against the SuperLink's
 *   disk budget (`--chunk-disk-budget`, STORAGE_FULL past it). A run's chunks are dropped when it
 *   finishes.
 *   Runs do not resume after a restart, so neither do their chunks: the folder starts empty.
 * - **A quota per node and run.** What node N holds in scope (R, N), in memory and in files, is
 *   capped (`--node-chunk-quota`): past it an upload is refused with CHUNK_QUOTA_EXCEEDED, so one
 *   node's flood stops at its own share while the others' uploads go on. The bytes are released
 *   as the chunks go (sweep, delete, end of the run).
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
  type ChunkBudget,
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
  /** Bytes one node may hold in one run's scope (default: no quota). */
  nodeQuotaBytes?: number;
  /** Disk storage the files of chunks past the memory budget count against. */
  budget?: ChunkBudget;
  /** The clock of last uses (tests). */
  now?: () => number;
}

export class RelayChunks {
  readonly #dir: string;
  readonly #memoryBudget: number;
  readonly maxChunkBytes: number;
  /** `${run}/${uploader}/${id}` → the chunk's frames and their total size. */
  readonly #memory = new Map<string, { frames: readonly Uint8Array[]; bytes: number }>();
  /** Keys of chunks in files and their sizes, per run (has() needs no stat; a run's files go at once). */
  readonly #onDisk = new Map<string, Map<string, number>>();
  /** Chunks being written to files: a second put of one key shares the first's outcome. */
  readonly #writing = new Map<string, Promise<void>>();
  #memoryBytes = 0;
  #diskBytes = 0;
  /** Bytes each scope (`RUN/n-NODE`, `RUN/server`) holds, in memory and in files. */
  readonly #scopeBytes = new Map<string, number>();
  readonly #nodeQuota: number;
  readonly #budget: ChunkBudget | undefined;
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

  /** Bytes of chunks held in memory, and the memory budget (metrics). */
  get memory(): { used: number; limit: number } {
    return { used: this.#memoryBytes, limit: this.#memoryBudget };
  }

  constructor(o: RelayChunksOptions) {
    this.#dir = o.dir;
    this.#memoryBudget = o.memoryBytes ?? DEFAULT_CHUNK_MEMORY;
    this.maxChunkBytes = o.maxChunkBytes ?? CHUNK_SIZE;
    this.#now = o.now ?? Date.now;
    this.#nodeQuota = o.nodeQuotaBytes ?? Number.POSITIVE_INFINITY;
    this.#budget = o.budget;
    this.#poolMax = Math.floor(Math.min(this.#memoryBudget, POOL_BYTES) / this.maxChunkBytes);
    rmSync(o.dir, { recursive: true, force: true });
  }

  /** The chunks one party uploads for a run: stored as sent, never hashed here. */
  scope(runId: string, uploader: string): ChunkStore & VerifiedPut & RelayStore & FramedRead {
    const prefix = scopeKey(runId, uploader);
    return {
      relay: true,
      admit: (bytes) => this.#admit(runId, uploader, prefix, bytes),
      has: async (id) => this.#has(`${prefix}/${id}`),
      missing: async (ids) => [...new Set(ids)].filter((id) => !this.#has(`${prefix}/${id}`)),
      put: (id, data) => this.#put(runId, uploader, prefix, id, [data], data.byteLength),
      putVerified: (id, data) => this.#put(runId, uploader, prefix, id, [data], data.byteLength),
      putFrames: (id, frames, bytes) => this.#put(runId, uploader, prefix, id, frames, bytes),
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

  /** Forget every chunk of a run (it finished); its bytes leave the quotas and the budget. */
  async dropRun(runId: string): Promise<void> {
    const prefix = `${runId}/`;
    for (const key of this.#used.keys()) if (key.startsWith(prefix)) this.#used.delete(key);
    // A write still in flight sees it was dropped and removes its own file (see #put).
    for (const key of this.#writing.keys()) if (key.startsWith(prefix)) this.#writing.delete(key);
    for (const key of this.#scopeBytes.keys()) if (key.startsWith(prefix)) this.#scopeBytes.delete(key);
    for (const [key, held] of this.#memory)
      if (key.startsWith(prefix)) {
        this.#memory.delete(key);
        this.#memoryBytes -= held.bytes;
        this.#release(held);
      }
    const files = this.#onDisk.get(runId);
    if (!files) return;
    this.#onDisk.delete(runId);
    let bytes = 0;
    for (const n of files.values()) bytes += n;
    this.#diskBytes -= bytes;
    this.#budget?.release(bytes);
    await rm(join(this.#dir, runId), { recursive: true, force: true });
  }

  stats(): StoreStats & { memoryBytes: number; onDisk: number; diskBytes: number } {
    let onDisk = 0;
    for (const s of this.#onDisk.values()) onDisk += s.size;
    return {
      chunks: this.#memory.size + onDisk,
      bytes: this.#memoryBytes + this.#diskBytes,
      memoryBytes: this.#memoryBytes,
      onDisk,
      diskBytes: this.#diskBytes,
    };
  }

  /** Bytes node `uploader` holds in run `runId`'s scope. */
  heldBy(runId: string, uploader: string): number {
    return this.#scopeBytes.get(scopeKey(runId, uploader)) ?? 0;
  }

  /** Throws CHUNK_QUOTA_EXCEEDED or STORAGE_FULL unless `bytes` more fit in the scope now. */
  #admit(runId: string, uploader: string, prefix: string, bytes: number): void {
    const held = this.#scopeBytes.get(prefix) ?? 0;
    if (uploader !== SERVER_SCOPE && held + bytes > this.#nodeQuota)
      throw new PollenError(
        'CHUNK_QUOTA_EXCEEDED',
        `Node ${uploader} holds ${held} bytes of run ${runId}'s chunks; ${bytes} more would pass its quota of ${this.#nodeQuota}`,
        { data: { runId, heldBytes: held, quotaBytes: this.#nodeQuota } },
      );
    if (this.#memoryBytes + bytes > this.#memoryBudget) this.#budget?.admit(bytes);
  }

  #charge(prefix: string, bytes: number): void {
    this.#scopeBytes.set(prefix, (this.#scopeBytes.get(prefix) ?? 0) + bytes);
  }

  #uncharge(prefix: string, bytes: number): void {
    const left = (this.#scopeBytes.get(prefix) ?? 0) - bytes;
    if (left > 0) this.#scopeBytes.set(prefix, left);
    else this.#scopeBytes.delete(prefix);
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
    uploader: string,
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
    const writing = this.#writing.get(key);
    if (writing) return writing;
    // Checked and counted before any await: concurrent uploads cannot pass the quota together.
    this.#admit(runId, uploader, prefix, bytes);
    const inMemory = this.#memoryBytes + bytes <= this.#memoryBudget;
    if (!inMemory) this.#budget?.reserve(bytes);
    this.#charge(prefix, bytes);
    this.#used.set(key, this.#now());
    if (inMemory) {
      this.#memory.set(key, { frames: this.#compact(frames, bytes), bytes });
      this.#memoryBytes += bytes;
      return;
    }
    const write = this.#writeFile(prefix, key, frames);
    this.#writing.set(key, write);
    let failed: unknown;
    await write.catch((e) => {
      failed = e ?? new Error('write failed');
    });
    // Not ours any more: the run was dropped meanwhile, and with it the scope's counts.
    const dropped = this.#writing.get(key) !== write;
    if (failed !== undefined || dropped) {
      this.#budget?.release(bytes);
      if (dropped) await rm(join(this.#dir, key), { force: true });
      else {
        this.#writing.delete(key);
        this.#used.delete(key);
        this.#uncharge(prefix, bytes);
      }
      if (failed !== undefined) throw failed;
      return;
    }
    this.#writing.delete(key);
    const files = this.#onDisk.get(runId) ?? new Map<string, number>();
    this.#onDisk.set(runId, files);
    files.set(key, bytes);
    this.#diskBytes += bytes;
  }

  async #writeFile(prefix: string, key: string, frames: readonly Uint8Array[]): Promise<void> {
    const path = join(this.#dir, key);
    await mkdir(join(this.#dir, prefix), { recursive: true, mode: 0o700 });
    const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(temp, 'wx', 0o600);
    try {
      await fh.writev(frames as Uint8Array[]);
    } catch (e) {
      await fh.close();
      await rm(temp, { force: true });
      throw e;
    }
    await fh.close();
    await rename(temp, path);
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
    const prefix = key.slice(0, key.lastIndexOf('/'));
    const held = this.#memory.get(key);
    if (held) {
      this.#memory.delete(key);
      this.#memoryBytes -= held.bytes;
      this.#uncharge(prefix, held.bytes);
      this.#release(held);
    }
    const files = this.#onDisk.get(runId);
    const bytes = files?.get(key);
    if (files && bytes !== undefined) {
      files.delete(key);
      this.#diskBytes -= bytes;
      this.#uncharge(prefix, bytes);
      this.#budget?.release(bytes);
      await rm(join(this.#dir, key), { force: true });
    }
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
