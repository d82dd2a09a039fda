/**
 * Run artefacts on the SuperLink, in memory (test/support/memory-link.ts): a run's ServerApp saves
 * through ServerAppIo (RemoteArtefacts, as the app process does), an admin lists and downloads
 * through the Control API. The limits, the name rules and the integrity checks hold on both
 * sides: the app process refuses before a byte travels, the SuperLink decides. The same with real
 * processes, mutual TLS and `pollen pull` is in test/federation.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { outcomeOf } from '../../test/support/errors.js';
import { type MemoryLink, memoryLinks } from '../../test/support/memory-link.js';
import { artefactLimitsFromWire, RemoteArtefacts } from '../apps/remote-artefacts.js';
import { encodeNpz } from '../sdk/npz.js';
import { ArrayRecord } from '../sdk/records.js';
import { rpcChunkTransport } from '../transport/chunk-rpc.js';
import { downloadChunks } from '../transport/chunk-transfer.js';
import { CHUNK_SIZE, chunkId } from '../transport/chunks.js';

const start = memoryLinks('artefacts');
const MiB = 1024 * 1024;

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A running run and its ServerApp's side: the ServerAppIo client and context.artefacts. */
async function serverApp(l: MemoryLink) {
  const runId = await l.runningRun();
  const client = await l.serverApp(runId);
  const { artefactLimits } = await client.getRunInfo({});
  const limits = artefactLimitsFromWire(artefactLimits);
  const artefacts = new RemoteArtefacts(client, rpcChunkTransport(client), runId, limits);
  return { runId, client, artefacts, limits };
}

/** Artefact `name` of `runId` as an admin downloads it: the run's scope, every chunk verified. */
async function download(l: MemoryLink, runId: string, name: string): Promise<Buffer> {
  const admin = l.admin();
  const { artefacts } = await admin.getRunDetails({ runId });
  const a = artefacts.find((x) => x.name === name);
  if (!a) throw new Error(`run ${runId} has no artefact ${name}`);
  const got = new Map<string, Uint8Array>();
  await downloadChunks(rpcChunkTransport(admin), a.chunkIds, (id, data) => void got.set(id, data), {
    scope: { runId },
  });
  return Buffer.concat(a.chunkIds.map((id) => got.get(id)!));
}

describe('saving and downloading artefacts', () => {
  it('keeps what a ServerApp saves (an ArrayRecord as .npz, text), listed with its run; an admin downloads the same bytes', async () => {
    const l = await start();
    const { runId, artefacts } = await serverApp(l);
    // 5 MiB of weights: two chunks, the second shorter.
    const w = Float32Array.from({ length: (5 * MiB) / 4 }, (_, i) => i % 1000);
    const model = ArrayRecord.fromArrays({ w });
    const npz = Buffer.concat(encodeNpz(model));
    const saved = await artefacts.save('final_model.npz', model);
    expect(saved).toEqual({ name: 'final_model.npz', size: npz.byteLength, hash: sha(npz) });
    await artefacts.save('metrics/history.json', '[0.5,0.25]');

    const { artefacts: listed } = await l.admin().getRunDetails({ runId });
    expect(listed.map((a) => [a.name, Number(a.size), a.hash, a.chunkIds.length, Number(a.savedAt)])).toEqual(
      [
        ['final_model.npz', npz.byteLength, sha(npz), 2, l.clock.now()],
        ['metrics/history.json', 10, sha(Buffer.from('[0.5,0.25]')), 1, l.clock.now()],
      ],
    );
    // (Compared by hash: a deep comparison of megabytes takes the test's whole time.)
    expect(sha(await download(l, runId, 'final_model.npz'))).toBe(sha(npz));
    expect((await download(l, runId, 'metrics/history.json')).toString()).toBe('[0.5,0.25]');
    // In the SuperLink's own store (STATE_DIR/artefacts), as 4 MiB pieces named by their SHA-256.
    expect(listed[0]!.chunkIds).toEqual([
      chunkId(npz.subarray(0, CHUNK_SIZE)),
      chunkId(npz.subarray(CHUNK_SIZE)),
    ]);
    for (const id of listed[0]!.chunkIds) expect(await l.link.artefacts.chunks.has(id)).toBe(true);
  });

  it('replaces an artefact saved again under its name; the old chunks are collected, the kept ones stay', async () => {
    const l = await start();
    const { runId, artefacts } = await serverApp(l);
    const [first, second] = [randomBytes(100), randomBytes(100)];
    await artefacts.save('model.bin', first);
    await artefacts.save('model.bin', second);
    const { artefacts: listed } = await l.admin().getRunDetails({ runId });
    expect(listed.map((a) => [a.name, a.hash])).toEqual([['model.bin', sha(second)]]);
    expect(await l.link.artefacts.collect(0)).toEqual({ removed: 1, bytes: 100 });
    expect(await l.link.artefacts.chunks.has(chunkId(first))).toBe(false);
    expect(await download(l, runId, 'model.bin')).toEqual(second);
  });

  it('saves an empty artefact (no chunks) and one of exactly one chunk', async () => {
    const l = await start();
    const { runId, artefacts } = await serverApp(l);
    await artefacts.save('empty.txt', '');
    const full = randomBytes(CHUNK_SIZE);
    await artefacts.save('full.bin', full);
    expect((await download(l, runId, 'empty.txt')).byteLength).toBe(0);
    expect(sha(await download(l, runId, 'full.bin'))).toBe(sha(full));
  });
});

describe('limits and names', () => {
  it('the SuperLink announces its limits; the app process refuses past them before any byte travels', async () => {
    const l = await start({ limits: { artefactMaxBytes: 1000, runArtefactBytes: 1500 } });
    const { runId, client, artefacts } = await serverApp(l);
    expect((await client.getRunInfo({})).artefactLimits).toMatchObject({
      maxBytes: 1000n,
      runMaxBytes: 1500n,
      runMaxCount: 10_000,
    });
    const big = randomBytes(1001);
    expect(await outcomeOf(artefacts.save('big.bin', big))).toBe('ARTEFACT_TOO_LARGE');
    expect(await outcomeOf(artefacts.save('../escape.bin', 'x'))).toBe('ARTEFACT_NAME_INVALID');
    expect(await l.link.appReads(runId, undefined).has(chunkId(big))).toBe(false);
    await artefacts.save('a.bin', randomBytes(800));
    const b = randomBytes(800);
    expect(await outcomeOf(artefacts.save('b.bin', b))).toBe('RUN_ARTEFACTS_FULL');
    expect(await l.link.appReads(runId, undefined).has(chunkId(b))).toBe(false);
    // Saving a name again frees its old bytes.
    await artefacts.save('a.bin', randomBytes(900));
    expect(await outcomeOf(artefacts.save('a.bin/inner', 'x'))).toBe('ARTEFACT_NAME_INVALID');
  });

  it('the SuperLink decides: it refuses names, sizes and budgets itself, with the same codes', async () => {
    const l = await start({ limits: { artefactMaxBytes: 1000, runArtefactBytes: 1500 } });
    const { runId, client, artefacts } = await serverApp(l);
    const hash = sha(Buffer.alloc(0));
    const save = (name: string, size: number) =>
      client.saveArtefact({ name, hash, size: BigInt(size), chunkIds: [] });
    for (const name of ['../x', '/etc/passwd', 'a//b', 'a/./b', '.ssh/authorized_keys', 'a\\b', ''])
      expect({ name, code: await outcomeOf(save(name, 0)) }).toEqual({ name, code: 'ARTEFACT_NAME_INVALID' });
    expect(await outcomeOf(save('big', 1001))).toBe('ARTEFACT_TOO_LARGE');
    await artefacts.save('a.bin', randomBytes(800));
    expect(await outcomeOf(save('b.bin', 800))).toBe('RUN_ARTEFACTS_FULL');
    expect(await outcomeOf(save('a.bin/x', 1))).toBe('ARTEFACT_NAME_INVALID');
    const { artefacts: listed } = await l.admin().getRunDetails({ runId });
    expect(listed.map((a) => a.name)).toEqual(['a.bin']);
  });

  it('refuses chunks that do not add up: missing, tampered, the wrong hash or layout; nothing is recorded', async () => {
    const l = await start();
    const { runId, client } = await serverApp(l);
    const chunks = rpcChunkTransport(client);
    const data = randomBytes(100);
    const save = (hash: string, size: number, chunkIds: string[]) =>
      client.saveArtefact({ name: 'm.bin', hash, size: BigInt(size), chunkIds });
    expect(await outcomeOf(save(sha(data), 100, [chunkId(data)]))).toBe('CHUNK_MISSING');
    // The run's scope keeps what the ServerApp names without hashing it: the save verifies.
    const other = randomBytes(100);
    await pushOne(chunks, chunkId(data), other);
    expect(await outcomeOf(save(sha(data), 100, [chunkId(data)]))).toBe('CHUNK_MISMATCH');
    const good = randomBytes(100);
    await pushOne(chunks, chunkId(good), good);
    expect(await outcomeOf(save(sha(other), 100, [chunkId(good)]))).toBe('ARTEFACT_INVALID');
    expect(await outcomeOf(save(sha(good), 100, [chunkId(good), chunkId(good)]))).toBe('ARTEFACT_INVALID');
    expect(await outcomeOf(save(sha(good), 99, [chunkId(good)]))).toBe('ARTEFACT_INVALID');
    expect(await outcomeOf(save('md5:abc', 100, [chunkId(good)]))).toBe('INVALID_REQUEST');
    expect((await l.admin().getRunDetails({ runId })).artefacts).toEqual([]);
  });

  it('a finished run keeps its artefacts and takes no more (RUN_NOT_RUNNING)', async () => {
    const l = await start();
    const { runId, artefacts } = await serverApp(l);
    await artefacts.save('model.bin', 'final');
    await l.state.transitionRun(runId, 'finished', { subStatus: 'completed' });
    expect(await outcomeOf(artefacts.save('late.bin', 'late'))).toBe('RUN_NOT_RUNNING');
    expect((await download(l, runId, 'model.bin')).toString()).toBe('final');
  });
});

describe('reading artefacts', () => {
  it('is scoped to the run named: another run’s chunks are CHUNK_SCOPE_DENIED, no run CHUNK_RUN_REQUIRED', async () => {
    const l = await start();
    const a = await serverApp(l);
    const b = await serverApp(l);
    const secret = randomBytes(64);
    await a.artefacts.save('model.bin', secret);
    const admin = rpcChunkTransport(l.admin());
    const pull = (scope?: { runId: string }) =>
      downloadChunks(admin, [chunkId(secret)], () => {}, scope ? { scope } : {});
    expect(await outcomeOf(pull({ runId: a.runId }))).toBe('ok');
    expect(await outcomeOf(pull({ runId: b.runId }))).toBe('CHUNK_SCOPE_DENIED');
    expect(await outcomeOf(pull())).toBe('CHUNK_RUN_REQUIRED');
    expect(await outcomeOf(pull({ runId: 'no-such-run' }))).toBe('CHUNK_SCOPE_DENIED');
    const site = rpcChunkTransport(l.control(l.peer('site-1')));
    expect(
      await outcomeOf(downloadChunks(site, [chunkId(secret)], () => {}, { scope: { runId: a.runId } })),
    ).toBe('PERMISSION_DENIED');
  });
});

/** Push one chunk into the run's ServerApp scope as named, whatever its bytes. */
async function pushOne(
  chunks: ReturnType<typeof rpcChunkTransport>,
  id: string,
  data: Uint8Array,
): Promise<void> {
  let sent = false;
  await chunks.push(async () => {
    if (sent) return undefined;
    sent = true;
    return { id, data };
  });
}
