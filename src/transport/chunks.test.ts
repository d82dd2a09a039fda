import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { chunkId, DiskChunkStore, isChunkId, MemoryChunkStore, verifyChunk } from './chunks.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as PollenError).code;
  }
  return undefined;
}

async function asyncCodeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PollenError);
    return (e as PollenError).code;
  }
  return undefined;
}

describe('chunk ids', () => {
  it('are lowercase hex SHA-256', () => {
    expect(chunkId(new Uint8Array(0))).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    expect(isChunkId(chunkId(new Uint8Array([1])))).toBe(true);
    expect(isChunkId('E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855')).toBe(false);
    expect(isChunkId('../../etc/passwd')).toBe(false);
    expect(isChunkId(42)).toBe(false);
  });

  it('verifyChunk reports the right code', () => {
    const data = new Uint8Array([1, 2, 3]);
    expect(codeOf(() => verifyChunk(chunkId(data), data))).toBeUndefined();
    expect(codeOf(() => verifyChunk('nope', data))).toBe('CHUNK_ID_INVALID');
    expect(codeOf(() => verifyChunk(chunkId(data), data, 2))).toBe('CHUNK_TOO_LARGE');
    expect(codeOf(() => verifyChunk(chunkId(new Uint8Array([9])), data))).toBe('CHUNK_MISMATCH');
  });
});

describe('DiskChunkStore', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pollen-chunks-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('puts, gets, reports missing chunks and deletes', async () => {
    const store = new DiskChunkStore(join(dir, 'store'), { maxChunkBytes: 1024 });
    const a = randomBytes(1000);
    const b = randomBytes(10);
    const ida = chunkId(a);
    const idb = chunkId(b);
    expect(await store.has(ida)).toBe(false);
    expect(await store.get(ida)).toBeUndefined();
    await store.put(ida, a);
    await store.put(ida, a); // idempotent
    expect(await store.has(ida)).toBe(true);
    expect(Buffer.from((await store.get(ida))!)).toEqual(a);
    expect(await store.missing([idb, ida, idb])).toEqual([idb]);
    // Layout and permissions: dir/ab/abcd…, 0700 folders, 0600 files.
    const file = join(dir, 'store', ida.slice(0, 2), ida);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'store', ida.slice(0, 2)))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'store'))).mode & 0o777).toBe(0o700);
    expect(await store.stats()).toEqual({ chunks: 1, bytes: 1000 });
    await store.delete(ida);
    await store.delete(ida);
    expect(await store.has(ida)).toBe(false);
  });

  it('refuses mismatched, oversize and badly named chunks, writing nothing', async () => {
    const store = new DiskChunkStore(dir, { maxChunkBytes: 16 });
    const data = new Uint8Array(8).fill(1);
    expect(await asyncCodeOf(store.put(chunkId(new Uint8Array(8)), data))).toBe('CHUNK_MISMATCH');
    const big = new Uint8Array(17);
    expect(await asyncCodeOf(store.put(chunkId(big), big))).toBe('CHUNK_TOO_LARGE');
    expect(await asyncCodeOf(store.put('../x', data))).toBe('CHUNK_ID_INVALID');
    expect(await asyncCodeOf(store.get('../x'))).toBe('CHUNK_ID_INVALID');
    expect(await asyncCodeOf(store.missing(['zz']))).toBe('CHUNK_ID_INVALID');
    expect(await store.stats()).toEqual({ chunks: 0, bytes: 0 });
  });

  it('survives many concurrent puts of the same id and leaves no temp files', async () => {
    const store = new DiskChunkStore(dir);
    const data = randomBytes(256 * 1024);
    const id = chunkId(data);
    await Promise.all(Array.from({ length: 20 }, () => store.put(id, data)));
    expect(Buffer.from((await store.get(id))!)).toEqual(data);
    expect(await readdir(join(dir, id.slice(0, 2)))).toEqual([id]);
  });

  it('treats a corrupted file as absent (and removes it), so it is fetched again', async () => {
    const store = new DiskChunkStore(dir);
    const data = randomBytes(100);
    const id = chunkId(data);
    await store.put(id, data);
    await writeFile(join(dir, id.slice(0, 2), id), randomBytes(100));
    expect(await store.get(id)).toBeUndefined();
    expect(await store.missing([id])).toEqual([id]);
    await store.put(id, data);
    expect(Buffer.from((await store.get(id))!)).toEqual(data);
  });

  it('gc removes unreferenced chunks and stale temp files, keeping live and young ones', async () => {
    const store = new DiskChunkStore(dir);
    const chunks = Array.from({ length: 5 }, (_, i) => new Uint8Array(100 + i).fill(i));
    const ids = chunks.map((c) => chunkId(c));
    for (const [i, c] of chunks.entries()) await store.putVerified(ids[i]!, c);
    const sub = join(dir, ids[0]!.slice(0, 2));
    const staleTemp = join(sub, `.${ids[0]}.abc.tmp`);
    const freshTemp = join(sub, `.${ids[0]}.def.tmp`);
    await writeFile(staleTemp, 'x');
    await writeFile(freshTemp, 'y');
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(staleTemp, old, old);
    // Young chunks survive with minAgeMs.
    expect(await store.gc(new Set(), { minAgeMs: 60_000 })).toEqual({ removed: 0, bytes: 0 });
    const result = await store.gc(new Set([ids[1]!, ids[3]!]));
    expect(result).toEqual({ removed: 3, bytes: 100 + 102 + 104 });
    expect(await store.missing(ids)).toEqual([ids[0], ids[2], ids[4]]);
    await expect(readFile(staleTemp)).rejects.toThrow();
    expect(await readFile(freshTemp, 'utf8')).toBe('y');
    expect(await store.stats()).toEqual({ chunks: 2, bytes: 101 + 103 });
  });

  it('counts each chunk file once against its budget, refuses past it and gives bytes back as files go', async () => {
    let used = 0;
    const budget = {
      admit(bytes: number) {
        if (used + bytes > 1000) throw new PollenError('STORAGE_FULL', 'full');
      },
      reserve(bytes: number) {
        this.admit(bytes);
        used += bytes;
      },
      release(bytes: number) {
        used -= bytes;
      },
    };
    const store = new DiskChunkStore(dir, { budget });
    const [a, b, c] = [randomBytes(400), randomBytes(400), randomBytes(300)];
    // Concurrent puts of one id, by both paths: one file, counted once.
    const temps = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const temp = await store.tempPathFor(chunkId(a));
        await writeFile(temp, a);
        return temp;
      }),
    );
    await Promise.all([
      ...Array.from({ length: 4 }, () => store.put(chunkId(a), a)),
      ...temps.map((t) => store.adoptVerified(chunkId(a), t)),
    ]);
    expect(used).toBe(400);
    await store.put(chunkId(b), b);
    expect(used).toBe(800);
    expect(() => store.admit(300)).toThrow(/full/);
    expect(await asyncCodeOf(store.put(chunkId(c), c))).toBe('STORAGE_FULL');
    const temp = await store.tempPathFor(chunkId(c));
    await writeFile(temp, c);
    expect(await asyncCodeOf(store.adoptVerified(chunkId(c), temp))).toBe('STORAGE_FULL');
    // Refused: nothing stored, no temp file left, nothing counted. (The folder is shared by ids
    // with the same first two hex digits: a's or b's file may be there, one time in 128.)
    expect(await store.has(chunkId(c))).toBe(false);
    const left = await readdir(join(dir, chunkId(c).slice(0, 2)));
    expect(left.filter((name) => name.includes(chunkId(c)))).toEqual([]);
    expect(used).toBe(800);
    await store.delete(chunkId(a));
    await store.delete(chunkId(a));
    expect(used).toBe(400);
    await store.put(chunkId(c), c);
    expect((await store.gc(new Set([chunkId(c)]))).bytes).toBe(400);
    expect(used).toBe(300);
    // A corrupted file is removed on read, and leaves the budget too.
    await writeFile(join(dir, chunkId(c).slice(0, 2), chunkId(c)), randomBytes(300));
    expect(await store.get(chunkId(c))).toBeUndefined();
    expect(used).toBe(0);
    expect(await store.stats()).toEqual({ chunks: 0, bytes: 0 });
  });

  it('gc and stats of a store never written are empty', async () => {
    const store = new DiskChunkStore(join(dir, 'never'));
    expect(await store.gc(new Set())).toEqual({ removed: 0, bytes: 0 });
    expect(await store.stats()).toEqual({ chunks: 0, bytes: 0 });
  });
});

describe('MemoryChunkStore', () => {
  it('copies on put, keeps views on putView, and verifies', async () => {
    const store = new MemoryChunkStore({ maxChunkBytes: 64 });
    const data = new Uint8Array(32).fill(7);
    const id = chunkId(data);
    await store.put(id, data);
    expect((await store.get(id))!.buffer).not.toBe(data.buffer);
    const view = new Float32Array(16).fill(1);
    const bytes = new Uint8Array(view.buffer, 16, 32);
    const vid = chunkId(bytes);
    store.putView(vid, bytes);
    expect((await store.get(vid))!.buffer).toBe(view.buffer);
    expect(await asyncCodeOf(store.put(id, new Uint8Array(32)))).toBe('CHUNK_MISMATCH');
    expect(await asyncCodeOf(store.put(chunkId(new Uint8Array(65)), new Uint8Array(65)))).toBe(
      'CHUNK_TOO_LARGE',
    );
    expect(await store.missing([id, vid, chunkId(new Uint8Array(1))])).toEqual([chunkId(new Uint8Array(1))]);
    expect(await store.stats()).toEqual({ chunks: 2, bytes: 64 });
    expect(await store.gc(new Set([id]))).toEqual({ removed: 1, bytes: 32 });
    await store.delete(id);
    expect(await store.has(id)).toBe(false);
  });
});
