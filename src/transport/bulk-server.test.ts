// The bulk chunk route (PUT/GET /pollen.v1.chunks/ID) on a real mutual-TLS Pollen RPC server.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { initCa, loadCa } from '../pki/ca.js';
import { createSiteCertificate } from '../pki/site.js';
import { bulkChunkPath } from './bulk-protocol.js';
import type { BulkRequest } from './bulk-server.js';
import { serveMissingChunks, servePullChunks, servePushChunks } from './chunk-rpc.js';
import { downloadChunks, uploadChunks, uploadPieces } from './chunk-transfer.js';
import { CHUNK_SIZE, chunkId, DiskChunkStore, MemoryChunkStore } from './chunks.js';
import { ERROR_CODE_HEADER } from './errors.js';
import { openChannel, type RpcChannel } from './rpc-client.js';
import { type RpcServer, startRpcServer } from './rpc-server.js';
import { loadTlsMaterial, type TlsMaterial } from './tls.js';

let dir: string;
let server: RpcServer;
let store: DiskChunkStore;
let client: TlsMaterial;
let admin: TlsMaterial;
let channel: RpcChannel;
const bulkCalls: BulkRequest[] = [];
let rpcPushes = 0;

async function material(
  ca: Awaited<ReturnType<typeof loadCa>>,
  name: string,
  type: 'server' | 'client' | 'admin',
) {
  const r = await createSiteCertificate(ca, {
    name,
    type,
    outDir: join(dir, name),
    validityDays: 1,
    hosts: type === 'server' ? ['127.0.0.1'] : undefined,
  });
  return loadTlsMaterial({ cert: r.certPath, key: r.keyPath, ca: r.rootPath });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-bulk-'));
  await initCa({ name: 'bulk', dir: join(dir, 'ca') });
  const ca = await loadCa(join(dir, 'ca'));
  const serverTls = await material(ca, 'link', 'server');
  client = await material(ca, 'site-1', 'client');
  admin = await material(ca, 'alice', 'admin');
  store = new DiskChunkStore(join(dir, 'store'));
  server = await startRpcServer({
    log: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
    tls: { ...serverTls, requireClientCert: true },
    routes: (router) =>
      router.service(Fleet, {
        missingChunks: (req) => serveMissingChunks(store, req),
        pushChunks: (s) => {
          rpcPushes++;
          return servePushChunks(store, s);
        },
        pullChunks: (req) => servePullChunks(store, req),
      }),
    bulk: {
      store,
      authorize: (req) => {
        bulkCalls.push(req);
        if (req.peer?.type !== 'client')
          throw new PollenError('PERMISSION_DENIED', `A ${req.peer?.type} certificate cannot push chunks`);
      },
    },
  });
  channel = openChannel({ baseUrl: server.url, tls: client });
}, 60_000);

afterAll(async () => {
  channel?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const files = (): string[] =>
  readdirSync(join(dir, 'store'), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name);

/** A raw HTTP/2 PUT with our client certificate; resolves with status, error code header and body. */
function rawPut(
  id: string,
  body: Buffer,
  headers: http2.OutgoingHttpHeaders = {},
  tls: TlsMaterial = client,
): Promise<{ status: number; code: string | undefined }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(server.url, { ca: tls.ca, cert: tls.cert, key: tls.key });
    session.on('error', reject);
    const req = session.request({ ':method': 'PUT', ':path': bulkChunkPath(id), ...headers });
    let status = 0;
    let code: string | undefined;
    req.on('response', (h) => {
      status = Number(h[':status']);
      code = h[ERROR_CODE_HEADER] as string | undefined;
    });
    req.on('error', () => {}); // a reset after the answer
    req.resume();
    req.on('close', () => {
      session.close();
      if (status) resolve({ status, code });
      else reject(new Error(`no response (rst ${req.rstCode})`));
    });
    req.end(body);
  });
}

describe('bulk chunk route', () => {
  it('round-trips chunks through uploadChunks / downloadChunks without the RPCs', async () => {
    const chunks = new Map<string, Uint8Array>();
    for (let i = 0; i < 6; i++) {
      const data = randomBytes(i === 0 ? 1 : 1 << 20);
      chunks.set(chunkId(data), data);
    }
    const ids = [...chunks.keys()];
    const before = bulkCalls.length;
    const fleet = channel.chunks(channel.client(Fleet));
    const up = await uploadChunks(fleet, chunks);
    expect(up).toMatchObject({ sent: 6, skipped: 0 });
    expect(rpcPushes).toBe(0);
    expect(bulkCalls.slice(before).every((c) => c.method === 'PUT' && c.peer?.name === 'site-1')).toBe(true);
    expect(await store.missing(ids)).toEqual([]);
    const into = new MemoryChunkStore();
    const down = await downloadChunks(fleet, ids, into);
    expect(down.received).toBe(6);
    for (const id of ids)
      expect(Buffer.compare(Buffer.from((await into.get(id))!), Buffer.from(chunks.get(id)!))).toBe(0);
    // Uploading again sends nothing: MissingChunks still decides.
    expect(await uploadChunks(fleet, chunks)).toMatchObject({ sent: 0, skipped: 6 });
  });

  it('refuses a tampered body with CHUNK_MISMATCH and stores nothing', async () => {
    const data = randomBytes(4096);
    const id = chunkId(data);
    data[100] = (data[100] ?? 0) ^ 1;
    const before = files().length;
    const res = await rawPut(id, data);
    expect(res).toEqual({ status: 400, code: 'CHUNK_MISMATCH' });
    expect(await store.has(id)).toBe(false);
    expect(files().length).toBe(before); // no temp file left either
    await expect(channel.bulk!.put(id, data)).rejects.toMatchObject({ code: 'CHUNK_MISMATCH' });
  });

  it('answers 413 CHUNK_TOO_LARGE to an oversize chunk, declared or not', async () => {
    const big = Buffer.alloc(CHUNK_SIZE + 1, 7);
    const id = chunkId(big);
    expect(await rawPut(id, big)).toEqual({ status: 413, code: 'CHUNK_TOO_LARGE' });
    // Without content-length the server counts as the bytes arrive.
    const streamed = await new Promise<{ status: number; code?: string }>((resolve, reject) => {
      const session = http2.connect(server.url, { ca: client.ca, cert: client.cert, key: client.key });
      const req = session.request({ ':method': 'PUT', ':path': bulkChunkPath(id) });
      let status = 0;
      let code: string | undefined;
      req.on('response', (h) => {
        status = Number(h[':status']);
        code = h[ERROR_CODE_HEADER] as string;
      });
      req.on('error', () => {});
      req.resume();
      req.on('close', () => {
        session.close();
        if (status) resolve({ status, code });
        else reject(new Error('no response'));
      });
      for (let at = 0; at < big.length; at += 1 << 20) req.write(big.subarray(at, at + (1 << 20)));
      req.end();
    });
    expect(streamed).toEqual({ status: 413, code: 'CHUNK_TOO_LARGE' });
    expect(await store.has(id)).toBe(false);
  });

  it('refuses callers without a client certificate, or with the wrong kind', async () => {
    const data = randomBytes(1000);
    const id = chunkId(data);
    // No certificate at all: the TLS handshake is refused (the server requires one).
    const anonymous = openChannel({ baseUrl: server.url, tls: { ca: client.ca } });
    await expect(anonymous.bulk!.put(id, data)).rejects.toBeInstanceOf(PollenError);
    anonymous.close();
    // A verified certificate of another type: the route's own check (403).
    expect(await rawPut(id, data, {}, admin)).toEqual({ status: 403, code: 'PERMISSION_DENIED' });
    expect(await store.has(id)).toBe(false);
  });

  it('stores one file when the same chunk is PUT many times at once', async () => {
    const data = randomBytes(3 << 20);
    const id = chunkId(data);
    await Promise.all(Array.from({ length: 8 }, () => channel.bulk!.put(id, data)));
    expect(await store.has(id)).toBe(true);
    expect(Buffer.compare((await store.get(id))!, data)).toBe(0);
    expect(files().filter((n) => n.includes(id))).toEqual([id]);
  });

  it('answers a PUT of a chunk it holds at once, keeping the stored file', async () => {
    const held = randomBytes(CHUNK_SIZE);
    const id = chunkId(held);
    await channel.bulk!.put(id, held);
    const ino = statSync(store.pathOf(id)).ino;
    expect(await rawPut(id, held)).toEqual({ status: 201, code: undefined });
    // A fresh-model upload whose chunks are partly held already: all PUT, nothing rewritten.
    const fresh = randomBytes(1 << 20);
    const r = await uploadPieces(channel.chunks(channel.client(Fleet)), [held, fresh, held], { fresh: true });
    expect(r.ids).toEqual([id, chunkId(fresh), id]);
    expect(r).toMatchObject({ sent: 2, skipped: 0 });
    expect(statSync(store.pathOf(id)).ino).toBe(ino);
    expect(Buffer.compare((await store.get(chunkId(fresh)))!, fresh)).toBe(0);
  });

  it('answers GET of an absent chunk with CHUNK_MISSING', async () => {
    const id = chunkId(randomBytes(10));
    await expect(channel.bulk!.get(id)).rejects.toMatchObject({ code: 'CHUNK_MISSING' });
  });
});
