import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isPollenError } from '../errors.js';
import { MemoryChunkStore } from '../transport/chunks.js';
import { ByteBudget } from './quotas.js';
import { RelayChunks, SERVER_SCOPE } from './relay-chunks.js';

const root = mkdtempSync(join(tmpdir(), 'pollen-relay-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const NODE_A = '0123456789abcdef';
const NODE_B = 'fedcba9876543210';
const sha = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');
let n = 0;
const fresh = (): RelayChunks =>
  new RelayChunks({ dir: join(root, `r${n++}`), memoryBytes: 64 * 1024, maxChunkBytes: 32 * 1024 });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return isPollenError(e) ? e.code : String(e);
  }
}

describe('RelayChunks', () => {
  it('keeps chunks per run and uploader, as sent (no hashing)', async () => {
    const relay = fresh();
    const data = randomBytes(1000);
    const claimed = sha(randomBytes(8)); // not the hash of `data`: a relay does not check
    const a = relay.scope('run1', NODE_A);
    await a.put(claimed, data);
    expect(await a.has(claimed)).toBe(true);
    expect(Buffer.from((await a.get(claimed))!)).toEqual(data);
    expect(await relay.scope('run1', NODE_B).has(claimed)).toBe(false);
    expect(await relay.scope('run2', NODE_A).has(claimed)).toBe(false);
    expect(await a.missing([claimed, claimed, sha(data)])).toEqual([sha(data)]);
  });

  it('reads the named scopes in order, then the shared store; readers cannot write', async () => {
    const relay = fresh();
    const shared = new MemoryChunkStore();
    const s = randomBytes(500);
    await shared.put(sha(s), s);
    const fromA = randomBytes(600);
    const fromServer = randomBytes(700);
    const id = sha(fromA);
    await relay.scope('run1', NODE_A).put(id, fromA);
    await relay.scope('run1', SERVER_SCOPE).put(id, fromServer);
    const reader = relay.reader('run1', [NODE_A, SERVER_SCOPE], shared);
    expect(Buffer.from((await reader.get(id))!)).toEqual(fromA);
    expect(Buffer.from((await relay.reader('run1', [SERVER_SCOPE], shared).get(id))!)).toEqual(fromServer);
    expect(Buffer.from((await reader.get(sha(s)))!)).toEqual(s);
    expect(await relay.reader('run1', [NODE_B], shared).has(id)).toBe(false);
    expect(await reader.missing([id, sha(s), 'f'.repeat(64)])).toEqual(['f'.repeat(64)]);
    expect(await codeOf(reader.put(id, fromA))).toBe('INTERNAL');
  });

  it('keeps frames as they came; a full-size chunk is copied into one reusable buffer', async () => {
    const relay = fresh();
    const scope = relay.scope('run1', NODE_A);
    const whole = randomBytes(32 * 1024);
    const frames = [whole.subarray(0, 10_000), whole.subarray(10_000, 20_000), whole.subarray(20_000)];
    await scope.putFrames(sha(whole), frames, whole.byteLength);
    const held = await scope.getFrames(sha(whole));
    expect(held).toHaveLength(1);
    expect(Buffer.from(held![0]!)).toEqual(whole);
    const small = randomBytes(3000);
    await scope.putFrames(sha(small), [small.subarray(0, 1000), small.subarray(1000)], 3000);
    expect(await scope.getFrames(sha(small))).toHaveLength(2);
    expect(Buffer.from((await scope.get(sha(small)))!)).toEqual(small);
  });

  it('spills past its memory budget to files, and a finished run leaves nothing', async () => {
    const relay = fresh();
    const scope = relay.scope('run1', NODE_A);
    const chunks = Array.from({ length: 4 }, () => randomBytes(30 * 1024));
    for (const c of chunks) await scope.put(sha(c), c);
    const stats = relay.stats();
    expect(stats.chunks).toBe(4);
    expect(stats.memoryBytes).toBeLessThanOrEqual(64 * 1024);
    expect(stats.onDisk).toBe(2);
    for (const c of chunks) expect(Buffer.from((await scope.get(sha(c)))!)).toEqual(c);
    const dir = join(root, `r${n - 1}`);
    expect(readdirSync(join(dir, 'run1', `n-${NODE_A}`))).toHaveLength(2);
    await scope.delete(sha(chunks[3]!));
    expect(await scope.has(sha(chunks[3]!))).toBe(false);
    await relay.dropRun('run1');
    expect(relay.stats()).toEqual({ chunks: 0, bytes: 0, memoryBytes: 0, onDisk: 0, diskBytes: 0 });
    expect(existsSync(join(dir, 'run1'))).toBe(false);
    for (const c of chunks) expect(await scope.get(sha(c))).toBeUndefined();
  });

  it('refuses chunks over the size limit, bad ids and bad run ids', async () => {
    const relay = fresh();
    const scope = relay.scope('run1', NODE_A);
    const big = randomBytes(33 * 1024);
    expect(await codeOf(scope.put(sha(big), big))).toBe('CHUNK_TOO_LARGE');
    expect(await codeOf(scope.put('not-an-id', big.subarray(0, 10)))).toBe('CHUNK_ID_INVALID');
    expect(() => relay.scope('../x', NODE_A)).toThrow(/run id/);
    expect(() => relay.scope('run1', '../x')).toThrow(/uploader/);
  });

  it('sweeps chunks nobody names or used lately; keeps named and recently used ones', async () => {
    let clock = 1_000_000;
    const relay = new RelayChunks({ dir: join(root, 'sweep'), now: () => clock });
    const a = relay.scope('run1', NODE_A);
    const [named, used, idle] = [randomBytes(100), randomBytes(200), randomBytes(300)];
    for (const c of [named, used, idle]) await a.put(sha(c), c);
    clock += 100_000;
    expect(await relay.sweep(new Set(), 120_000)).toBe(0); // all used within 2 minutes
    await a.missing([sha(used)]); // asked about: in use again
    clock += 100_000;
    expect(await relay.sweep(new Set([sha(named)]), 120_000)).toBe(1);
    expect(await a.has(sha(idle))).toBe(false);
    expect(await a.has(sha(named))).toBe(true);
    expect(Buffer.from((await a.get(sha(used)))!)).toEqual(used);
    clock += 200_000;
    expect(await relay.sweep(new Set(), 120_000)).toBe(2);
    expect(relay.stats().chunks).toBe(0);
  });

  it('refuses a node past its quota in a run, alone: other nodes, runs and the ServerApp go on', async () => {
    const relay = new RelayChunks({
      dir: join(root, 'quota'),
      memoryBytes: 20_000,
      maxChunkBytes: 10_000,
      nodeQuotaBytes: 25_000,
    });
    const a = relay.scope('run1', NODE_A);
    const held = [randomBytes(10_000), randomBytes(10_000), randomBytes(5_000)];
    for (const c of held) await a.put(sha(c), c); // the third goes to a file: quota counts both
    expect(relay.heldBy('run1', NODE_A)).toBe(25_000);
    const over = randomBytes(1);
    expect(await codeOf(a.put(sha(over), over))).toBe('CHUNK_QUOTA_EXCEEDED');
    expect(() => a.admit!(1)).toThrow(/quota of 25000/);
    expect(await a.has(sha(over))).toBe(false);
    // A chunk it holds already costs nothing.
    await a.put(sha(held[0]!), held[0]!);
    // The refusal is the node's alone.
    const others = [
      relay.scope('run1', NODE_B),
      relay.scope('run2', NODE_A),
      relay.scope('run1', SERVER_SCOPE),
    ];
    for (const s of others) {
      const c = randomBytes(10_000);
      await s.put(sha(c), c);
      expect(await s.has(sha(c))).toBe(true);
    }
    expect(relay.heldBy('run1', NODE_B)).toBe(10_000);
    // Deleting (or sweeping) a chunk gives its bytes back, from memory or from a file.
    await a.delete(sha(held[2]!));
    expect(relay.heldBy('run1', NODE_A)).toBe(20_000);
    await a.put(sha(over), over);
    await a.delete(sha(held[0]!));
    expect(relay.heldBy('run1', NODE_A)).toBe(10_001);
    await relay.dropRun('run1');
    expect(relay.heldBy('run1', NODE_A)).toBe(0);
    expect(relay.heldBy('run2', NODE_A)).toBe(10_000);
  });

  it('lets no burst of concurrent uploads pass the quota together', async () => {
    const relay = new RelayChunks({
      dir: join(root, 'quota-burst'),
      memoryBytes: 0, // every chunk goes to a file: the slow path, with awaits
      maxChunkBytes: 10_000,
      nodeQuotaBytes: 50_000,
    });
    const a = relay.scope('run1', NODE_A);
    const chunks = Array.from({ length: 20 }, () => randomBytes(10_000));
    const results = await Promise.all(chunks.map((c) => codeOf(a.put(sha(c), c))));
    expect(results.filter((r) => r === 'ok')).toHaveLength(5);
    expect(results.filter((r) => r === 'CHUNK_QUOTA_EXCEEDED')).toHaveLength(15);
    expect(relay.heldBy('run1', NODE_A)).toBe(50_000);
    expect(relay.stats()).toMatchObject({ chunks: 5, diskBytes: 50_000, onDisk: 5 });
    expect(readdirSync(join(root, 'quota-burst', 'run1', `n-${NODE_A}`))).toHaveLength(5);
  });

  it('counts chunk files against the disk budget: STORAGE_FULL past it, bytes back as files go', async () => {
    const disk = new ByteBudget(30_000);
    const relay = new RelayChunks({
      dir: join(root, 'budget'),
      memoryBytes: 10_000,
      maxChunkBytes: 10_000,
      budget: disk,
    });
    const a = relay.scope('run1', NODE_A);
    const server = relay.scope('run1', SERVER_SCOPE);
    const chunks = Array.from({ length: 5 }, () => randomBytes(10_000));
    await a.put(sha(chunks[0]!), chunks[0]!); // memory: not on disk
    expect(disk.used).toBe(0);
    for (const c of chunks.slice(1, 4)) await a.put(sha(c), c);
    expect(disk.used).toBe(30_000);
    // Full for everyone: nodes and the ServerApp alike (the quota is what keeps a node to its share).
    expect(await codeOf(a.put(sha(chunks[4]!), chunks[4]!))).toBe('STORAGE_FULL');
    expect(await codeOf(server.put(sha(chunks[4]!), chunks[4]!))).toBe('STORAGE_FULL');
    expect(() => server.admit!(10_000)).toThrow(/budget/);
    // Nothing of the refused chunk was kept or counted.
    expect(await server.has(sha(chunks[4]!))).toBe(false);
    expect(relay.heldBy('run1', NODE_A)).toBe(40_000);
    expect(relay.stats()).toMatchObject({ chunks: 4, onDisk: 3, diskBytes: 30_000 });
    await a.delete(sha(chunks[1]!));
    expect(disk.used).toBe(20_000);
    await server.put(sha(chunks[4]!), chunks[4]!);
    expect(disk.used).toBe(30_000);
    await relay.dropRun('run1');
    expect(disk.used).toBe(0);
    expect(relay.stats()).toEqual({ chunks: 0, bytes: 0, memoryBytes: 0, onDisk: 0, diskBytes: 0 });
    // A run that ends while a chunk of it is being written keeps neither the file nor its bytes.
    const late = relay.scope('run2', NODE_A);
    const writing = late.put(sha(chunks[0]!), chunks[0]!);
    const writing2 = late.put(sha(chunks[1]!), chunks[1]!);
    await relay.dropRun('run2');
    await Promise.all([writing, writing2]);
    expect(disk.used).toBe(0);
    expect(relay.heldBy('run2', NODE_A)).toBe(0);
    expect(relay.stats()).toEqual({ chunks: 0, bytes: 0, memoryBytes: 0, onDisk: 0, diskBytes: 0 });
    expect(existsSync(join(root, 'budget', 'run2', `n-${NODE_A}`, sha(chunks[1]!)))).toBe(false);
  });

  it('starts empty: chunks of runs that cannot resume are gone after a restart', async () => {
    const dir = join(root, 'restart');
    const first = new RelayChunks({ dir, memoryBytes: 0 });
    const c = randomBytes(100);
    await first.scope('run1', NODE_A).put(sha(c), c);
    expect(readdirSync(join(dir, 'run1', `n-${NODE_A}`))).toHaveLength(1);
    const second = new RelayChunks({ dir, memoryBytes: 0 });
    expect(existsSync(dir)).toBe(false);
    expect(await second.scope('run1', NODE_A).has(sha(c))).toBe(false);
  });
});
