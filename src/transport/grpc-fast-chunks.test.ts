/**
 * PullChunks and PushChunks on the direct HTTP/2 path (grpc-fast-chunks.ts), called by a real
 * gRPC client over a real loopback HTTP/2 server. The Connect routes of the service are left
 * unimplemented, so every answer here comes from the direct path.
 */
import { type Client, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { ClientAppIo } from '../gen/pollen/v1/appio_pb.js';
import { rpcChunkTransport } from './chunk-rpc.js';
import type { ChunkInit } from './chunk-transport.js';
import { CHUNK_SIZE, chunkId, MemoryChunkStore } from './chunks.js';
import { fromConnectError } from './errors.js';
import { fastChunkRoutes } from './grpc-fast-chunks.js';
import { MAX_MESSAGE_BYTES } from './http2-settings.js';
import { type RpcServer, startRpcServer } from './rpc-server.js';

const TOKEN = 'Bearer right';
let server: RpcServer;
let store: MemoryChunkStore;
/** Ids whose `get` finds nothing, as if deleted after PullChunks checked them. */
const vanishing = new Set<string>();

beforeAll(async () => {
  store = new MemoryChunkStore();
  const get = store.get.bind(store);
  store.get = async (id) => (vanishing.has(id) ? undefined : get(id));
  server = await startRpcServer({
    log: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
    routes: (r) => r.service(ClientAppIo, {}),
    fastStreams: fastChunkRoutes({
      service: ClientAppIo.typeName,
      store,
      authorize: (headers) => {
        if (headers.authorization !== TOKEN)
          throw new PollenError('APP_TOKEN_INVALID', 'The ClientApp token is not valid');
      },
      push: { maxChunkBytes: CHUNK_SIZE },
      maxMessageBytes: MAX_MESSAGE_BYTES,
    }),
  });
});
afterAll(() => server?.close());

function client(authorization = TOKEN): Client<typeof ClientAppIo> {
  return createClient(
    ClientAppIo,
    createGrpcTransport({
      baseUrl: server.url,
      interceptors: [
        (next) => (req) => {
          req.header.set('authorization', authorization);
          return next(req);
        },
      ],
    }),
  );
}

function chunk(bytes: number, seed: number): ChunkInit {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 4093) data[i] = (seed + i) & 0xff;
  return { id: chunkId(data), data };
}

async function push(chunks: ChunkInit[], c = client()) {
  async function* stream() {
    yield* chunks;
  }
  return c.pushChunks(stream());
}

async function pull(ids: string[], c = client()): Promise<ChunkInit[]> {
  const out: ChunkInit[] = [];
  for await (const { id, data } of c.pullChunks({ chunkIds: ids })) out.push({ id, data });
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return fromConnectError(e).code;
  }
  return 'none';
}

describe('the direct PullChunks / PushChunks path', () => {
  it('stores pushed chunks and streams them back bit-exactly, waiting on the stream between chunks', async () => {
    // Each 4 MiB write outgrows the stream's buffer: the server waits for drain between chunks.
    const chunks = [
      ...Array.from({ length: 3 }, (_, i) => chunk(CHUNK_SIZE, i)),
      chunk(100, 9),
      chunk(0, 10),
    ];
    const res = await push(chunks);
    expect(res.stored).toBe(chunks.length);
    expect(res.bytes).toBe(BigInt(3 * CHUNK_SIZE + 100));
    const back = await pull(chunks.map((c) => c.id));
    expect(back.map((c) => c.id)).toEqual(chunks.map((c) => c.id));
    for (const [i, c] of back.entries()) expect(Buffer.compare(c.data, chunks[i]!.data)).toBe(0);
    // Pollen's own chunk client (verifying every chunk) reads the same stream.
    const again = rpcChunkTransport(client()).pull(chunks.map((c) => c.id));
    let n = 0;
    for await (const _ of again) n++;
    expect(n).toBe(chunks.length);
  });

  it('refuses a caller without the service token on both methods', async () => {
    const stranger = client('Bearer wrong');
    const c = chunk(10, 1);
    expect(await codeOf(push([c], stranger))).toBe('APP_TOKEN_INVALID');
    expect(await store.has(c.id)).toBe(false);
    await push([c]);
    expect(await codeOf(pull([c.id], stranger))).toBe('APP_TOKEN_INVALID');
  });

  it('stores nothing of a chunk whose bytes do not match its id, or that is too large', async () => {
    const good = chunk(64, 2);
    const forged = { id: good.id, data: chunk(64, 3).data };
    expect(await codeOf(push([forged]))).toBe('CHUNK_MISMATCH');
    expect(await store.has(good.id)).toBe(false);
    const big = chunk(CHUNK_SIZE + 1, 4);
    expect(await codeOf(push([big]))).toBe('CHUNK_TOO_LARGE');
    expect(await store.has(big.id)).toBe(false);
  });

  it('answers CHUNK_MISSING before any data, and in the trailers when a chunk goes mid-stream', async () => {
    const held = chunk(1000, 5);
    const gone = chunk(1000, 6);
    await push([held, gone]);
    const absent = chunk(1000, 7).id;
    expect(await codeOf(pull([held.id, absent]))).toBe('CHUNK_MISSING');
    vanishing.add(gone.id);
    const got: string[] = [];
    const code = await codeOf(
      (async () => {
        for await (const c of client().pullChunks({ chunkIds: [held.id, gone.id] })) got.push(c.id);
      })(),
    );
    expect(code).toBe('CHUNK_MISSING');
    expect(got).toEqual([held.id]);
  });

  it('refuses malformed ids and more ids than a request may carry', async () => {
    expect(await codeOf(pull(['not-a-chunk-id']))).toBe('CHUNK_ID_INVALID');
    const many = Array.from({ length: 1001 }, (_, i) => chunk(1, i).id);
    expect(await codeOf(pull(many))).toBe('PAYLOAD_TOO_LARGE');
  });
});
