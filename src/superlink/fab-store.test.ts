import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FabSchema } from '../gen/pollen/v1/records_pb.js';
import { chunkId, DiskChunkStore } from '../transport/chunks.js';
import { FabStore } from './fab-store.js';

let dir: string;
let chunks: DiskChunkStore;
let fabs: FabStore;
const parts = [Buffer.from('first part of the bundle'), Buffer.from('and the second')];
const ids = parts.map((p) => chunkId(p));
const hash = `sha256:${createHash('sha256').update(Buffer.concat(parts)).digest('hex')}`;
const size = BigInt(Buffer.concat(parts).length);
const fab = (o: Partial<{ hash: string; size: bigint; chunkIds: string[] }> = {}) =>
  create(FabSchema, { hash, size, chunkIds: ids, name: 'app', version: '1.0.0', ...o });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-fabs-'));
  chunks = new DiskChunkStore(join(dir, 'chunks'));
  fabs = new FabStore(join(dir, 'fabs'), chunks);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('FabStore', () => {
  it('keeps a bundle whose chunks add up to its hash and size, and gives back its record and bytes', async () => {
    for (const [i, p] of parts.entries()) await chunks.put(ids[i] as string, p);
    const kept = await fabs.register(fab());
    expect(kept).toMatchObject({ hash, size, chunkIds: ids, name: 'app', version: '1.0.0' });
    expect(await fabs.get(hash)).toMatchObject({ hash, size, chunkIds: ids });
    expect(Buffer.from(await fabs.bytes(hash))).toEqual(Buffer.concat(parts));
    const live = new Set<string>();
    fabs.addChunkIds(live);
    expect([...live].sort()).toEqual([...ids].sort());
    // the records folder is the service's alone
    expect(statSync(join(dir, 'fabs')).mode & 0o777).toBe(0o700);
  });

  it('refuses a malformed hash, missing chunks, and chunks that do not add up, keeping nothing', async () => {
    await expect(fabs.register(fab({ hash: 'md5:00' }))).rejects.toMatchObject({ code: 'BUNDLE_INVALID' });
    await expect(fabs.register(fab())).rejects.toMatchObject({
      code: 'CHUNK_MISSING',
      data: { missing: ids },
    });
    for (const [i, p] of parts.entries()) await chunks.put(ids[i] as string, p);
    await expect(fabs.register(fab({ size: size + 1n }))).rejects.toMatchObject({ code: 'BUNDLE_INVALID' });
    await expect(
      fabs.register(fab({ chunkIds: [ids[1] as string, ids[0] as string] })),
    ).rejects.toMatchObject({
      code: 'BUNDLE_INVALID',
    });
    expect(readdirSync(join(dir, 'fabs'))).toEqual([]);
  });

  it('answers BUNDLE_NOT_FOUND for an unknown or malformed hash, and CHUNK_MISSING when a chunk went', async () => {
    await expect(fabs.get(hash)).rejects.toMatchObject({ code: 'BUNDLE_NOT_FOUND' });
    await expect(fabs.get('sha256:../../etc/passwd')).rejects.toMatchObject({ code: 'BUNDLE_NOT_FOUND' });
    for (const [i, p] of parts.entries()) await chunks.put(ids[i] as string, p);
    await fabs.register(fab());
    await chunks.gc(new Set([ids[0] as string]), { minAgeMs: 0 });
    await expect(fabs.bytes(hash)).rejects.toMatchObject({ code: 'CHUNK_MISSING' });
  });
});
