// Chunk transfer over a real Connect server: HTTP/2 with TLS on 127.0.0.1, gRPC protocol.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { connectNodeAdapter, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pollenCodeOf } from '../../test/support/errors.js';
import type { PollenError } from '../errors.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { Message } from '../sdk/message.js';
import { ArrayRecord, RecordDict } from '../sdk/records.js';
import {
  type ChunkRpcClient,
  rpcChunkTransport,
  serveMissingChunks,
  servePullChunks,
  servePushChunks,
} from './chunk-rpc.js';
import { downloadChunks, pullChunkStream, uploadChunks } from './chunk-transfer.js';
import type { ChunkTransport } from './chunk-transport.js';
import { type ChunkStore, chunkId, DiskChunkStore, MemoryChunkStore } from './chunks.js';
import { ERROR_CODE_HEADER, fromConnectError } from './errors.js';
import { WideWindowSessionManager } from './rpc-client.js';
import { HTTP2_SETTINGS, widenServerWindows } from './rpc-server.js';
import { chunkIdsOf, messageFromWire, messageFromWireStreaming, messageToWire } from './wire.js';

const MAX_CHUNK = 64 * 1024;

let dir: string;
let server: http2.Http2SecureServer;
let baseUrl: string;
let ca: string;
/** What the server stores into and serves from; tests swap it. */
let store: ChunkStore;
let client: ReturnType<typeof createClient<typeof Fleet>>;
/** The chunk RPCs of `client`. */
let rpc: ChunkTransport;
let sessions: WideWindowSessionManager;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-transfer-'));
  // A throwaway self-signed certificate for localhost / 127.0.0.1.
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-days',
      '1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  ca = readFileSync(join(dir, 'cert.pem'), 'utf8');
  server = http2.createSecureServer(
    { key: readFileSync(join(dir, 'key.pem')), cert: ca, settings: HTTP2_SETTINGS },
    connectNodeAdapter({
      routes: (router) =>
        router.service(Fleet, {
          missingChunks: (req) => serveMissingChunks(store, req),
          pushChunks: (requests) => servePushChunks(store, requests, { maxChunkBytes: MAX_CHUNK }),
          pullChunks: (req) => servePullChunks(store, req),
        }),
    }),
  );
  widenServerWindows(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  sessions = new WideWindowSessionManager(baseUrl, undefined, { ca });
  client = createClient(Fleet, createGrpcTransport({ baseUrl, sessionManager: sessions }));
  rpc = rpcChunkTransport(client);
});

afterAll(async () => {
  sessions?.abort();
  await new Promise((resolve) => server?.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  store = new DiskChunkStore(mkdtempSync(join(dir, 'store-')), { maxChunkBytes: MAX_CHUNK });
});

function model(floats = 100_000, seed = 1): Message {
  const w = Float32Array.from({ length: floats }, (_, i) => Math.sin(i * seed));
  const b = new Float32Array(floats / 4); // zeros: identical chunks
  return Message.create({
    content: new RecordDict({ model: ArrayRecord.fromArrays({ w, b, tiny: new Float32Array([1, 2]) }) }),
    dstNodeId: '1',
    messageType: 'train',
  });
}

describe('uploadChunks', () => {
  it('pushes only what the server lacks, in one PushChunks call', async () => {
    const { wire, chunks } = messageToWire(model(), { chunkSize: 16 * 1024 });
    const ids = chunkIdsOf(wire);
    expect(ids.length).toBe(chunks.size);
    // w: 25 distinct pieces; b: 6 identical full zero pieces and a short zero one.
    expect(chunks.size).toBe(27);
    const calls = { missing: 0, push: 0 };
    const counting: ChunkRpcClient = {
      missingChunks: (req, o) => {
        calls.missing++;
        return client.missingChunks(req, o);
      },
      pushChunks: (s, o) => {
        calls.push++;
        return client.pushChunks(s, o);
      },
      pullChunks: (req, o) => client.pullChunks(req, o),
    };
    const counted = rpcChunkTransport(counting);
    const progress: number[] = [];
    const first = await uploadChunks(counted, chunks, { onProgress: (p) => progress.push(p.chunks) });
    expect(first).toEqual({ sent: 27, bytes: 100_000 * 4 + 16 * 1024 + 1696, skipped: 0 });
    expect(calls).toEqual({ missing: 1, push: 1 });
    expect(progress).toEqual(Array.from({ length: 27 }, (_, i) => i + 1));
    expect(await store.missing(ids)).toEqual([]);

    const again = await uploadChunks(counted, chunks);
    expect(again).toEqual({ sent: 0, bytes: 0, skipped: 27 });
    expect(calls).toEqual({ missing: 2, push: 1 }); // nothing to push: no PushChunks call

    await store.delete(ids[3]!);
    await store.delete(ids[7]!);
    const partial = await uploadChunks(
      counted,
      { ids, source: { get: async (id) => chunks.get(id) } },
      {
        batchSize: 10,
      },
    );
    expect(partial).toEqual({ sent: 2, bytes: 2 * 16 * 1024, skipped: 25 });
    expect(calls).toEqual({ missing: 5, push: 2 }); // 27 ids in batches of 10
  });

  it('a tampered chunk is refused with CHUNK_MISMATCH and the server keeps serving', async () => {
    const good = new Uint8Array(1000).fill(1);
    const evil = new Uint8Array(1000).fill(2);
    const lying = new Map([[chunkId(good), evil]]);
    expect(await pollenCodeOf(uploadChunks(rpc, lying))).toBe('CHUNK_MISMATCH');
    expect(await store.has(chunkId(good))).toBe(false);
    // Raw call: the Connect code and the Pollen code header.
    try {
      await client.pushChunks(
        (async function* () {
          yield { id: chunkId(good), data: evil };
        })(),
      );
      expect.unreachable();
    } catch (e) {
      const ce = ConnectError.from(e);
      expect(ce.code).toBe(Code.InvalidArgument);
      expect(ce.metadata.get(ERROR_CODE_HEADER)).toBe('CHUNK_MISMATCH');
      expect(fromConnectError(e).code).toBe('CHUNK_MISMATCH');
    }
    // Same connection, next calls work.
    const { chunks } = messageToWire(model(20_000), { chunkSize: 16 * 1024 });
    expect((await uploadChunks(rpc, chunks)).sent).toBe(chunks.size);
  });

  it('oversize chunks, bad ids and too many ids are refused with their codes', async () => {
    const big = new Uint8Array(MAX_CHUNK + 1);
    expect(await pollenCodeOf(uploadChunks(rpc, new Map([[chunkId(big), big]])))).toBe('CHUNK_TOO_LARGE');
    try {
      await client.missingChunks({ chunkIds: Array(1001).fill(chunkId(big)) });
      expect.unreachable();
    } catch (e) {
      expect(ConnectError.from(e).code).toBe(Code.ResourceExhausted);
      expect(fromConnectError(e).code).toBe('PAYLOAD_TOO_LARGE');
    }
    try {
      await client.missingChunks({ chunkIds: ['../../etc/passwd'] });
      expect.unreachable();
    } catch (e) {
      expect(fromConnectError(e).code).toBe('CHUNK_ID_INVALID');
    }
    // Locally, before any call.
    expect(await pollenCodeOf(uploadChunks(rpc, new Map([['x', big]])))).toBe('CHUNK_ID_INVALID');
  });

  it('reports a chunk its source cannot provide as CHUNK_MISSING', async () => {
    const data = new Uint8Array(10).fill(3);
    const code = await pollenCodeOf(
      uploadChunks(rpc, { ids: [chunkId(data)], source: new MemoryChunkStore() }),
    );
    expect(code).toBe('CHUNK_MISSING');
  });
});

describe('downloadChunks', () => {
  it('fetches into a store, skipping held chunks, and the message reassembles', async () => {
    const message = model(50_000, 3);
    const { wire, chunks } = messageToWire(message, { chunkSize: 16 * 1024 });
    await uploadChunks(rpc, chunks);
    const ids = chunkIdsOf(wire);
    const local = new MemoryChunkStore();
    const first = ids[0]!;
    await local.put(first, chunks.get(first)!);
    const result = await downloadChunks(rpc, ids, local);
    expect(result.received).toBe(ids.length - 1);
    expect(result.skipped).toBe(1);
    const back = await messageFromWire(wire, (id) => local.get(id));
    const w = back.contentOrThrow.getArrayRecord('model')!;
    expect(w.get('w')!.data).toEqual(message.contentOrThrow.getArrayRecord('model')!.get('w')!.data);

    // Streaming straight from PullChunks into freshly allocated arrays.
    const streamed = await messageFromWireStreaming(wire, pullChunkStream(rpc, ids, { batchSize: 7 }), {
      verified: true,
    });
    expect(streamed.contentOrThrow.getArrayRecord('model')!.get('w')!.data).toEqual(w.get('w')!.data);

    // Into a callback (e.g. a preallocated array).
    const seen = new Map<string, number>();
    await downloadChunks(rpc, ids, (id, data) => void seen.set(id, data.byteLength));
    expect([...seen.keys()].sort()).toEqual([...ids].sort());
  });

  it('refuses a chunk the server corrupted, and the server keeps serving', async () => {
    const data = new Uint8Array(5000).fill(9);
    const id = chunkId(data);
    const liar = new MemoryChunkStore();
    liar.putView(id, new Uint8Array(5000).fill(8)); // claims id, serves other bytes
    store = liar;
    const into = new MemoryChunkStore();
    expect(await pollenCodeOf(downloadChunks(rpc, [id], into))).toBe('CHUNK_MISMATCH');
    expect(await into.has(id)).toBe(false);
    const honest = new MemoryChunkStore();
    await honest.put(id, data);
    store = honest;
    expect((await downloadChunks(rpc, [id], into)).received).toBe(1);
  });

  it('an id the server does not hold is CHUNK_MISSING (NotFound), before any data', async () => {
    const { chunks } = messageToWire(model(20_000), { chunkSize: 16 * 1024 });
    await uploadChunks(rpc, chunks);
    const absent = chunkId(new Uint8Array([42]));
    const ids = [...chunks.keys(), absent];
    const got: string[] = [];
    try {
      await downloadChunks(rpc, ids, (i) => void got.push(i));
      expect.unreachable();
    } catch (e) {
      expect((e as PollenError).code).toBe('CHUNK_MISSING');
      expect(ConnectError.from((e as PollenError).cause).code).toBe(Code.NotFound);
    }
    expect(got).toEqual([]);
  });
});
