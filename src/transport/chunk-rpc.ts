/**
 * The three chunk RPCs that Fleet, Control, ServerAppIo and ClientAppIo share (MissingChunks,
 * PushChunks, PullChunks): rpcChunkTransport moves chunks over them from a client, and the serve*
 * handlers answer them identically in every service. Memory stays O(chunk): an upload is one
 * PushChunks stream fed one chunk at a time (connect-node writes the next message only once the
 * previous one was handed to the socket), a download hands each chunk on as it arrives.
 *
 * Pollen's own channels move chunk bytes over the bulk route instead (bulk-client.ts), several
 * times faster; MissingChunks stays an RPC. Other clients (grpc-js, plain Connect clients) use
 * these.
 */
import type { CallOptions } from '@connectrpc/connect';
import { PollenError } from '../errors.js';
import { scopeHeaders } from './bulk-protocol.js';
import type { ChunkCallOptions, ChunkInit, ChunkPullOptions, ChunkTransport } from './chunk-transport.js';
import {
  assertChunkId,
  CHUNK_SIZE,
  type ChunkStore,
  hasVerifiedPut,
  isRelayStore,
  verifyChunk,
} from './chunks.js';
import { fromConnectError, toConnectError } from './errors.js';

/** Most ids per MissingChunks / PullChunks request. */
export const MAX_IDS_PER_REQUEST = 1000;

/** What rpcChunkTransport needs of a Connect client (any of the four services fits). */
export interface ChunkRpcClient {
  missingChunks(request: { chunkIds: string[] }, options?: CallOptions): Promise<{ chunkIds: string[] }>;
  pushChunks(request: AsyncIterable<ChunkInit>, options?: CallOptions): Promise<unknown>;
  /** Absent where a service only receives chunks. */
  pullChunks?(request: { chunkIds: string[] }, options?: CallOptions): AsyncIterable<ChunkInit>;
}

function callOptions(options: ChunkCallOptions): CallOptions {
  return {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.scope ? { headers: scopeHeaders(options.scope) } : {}),
  };
}

/** The chunk RPCs of `client` as a ChunkTransport. */
export function rpcChunkTransport(client: ChunkRpcClient): ChunkTransport {
  return {
    perChunk: false,
    async missing(ids, options = {}) {
      try {
        return (await client.missingChunks({ chunkIds: ids }, callOptions(options))).chunkIds;
      } catch (e) {
        throw fromConnectError(e);
      }
    },
    async push(next, options = {}) {
      // Errors of the source are kept apart: connect would report them as its own.
      let sourceError: unknown;
      const take = async (): Promise<ChunkInit | undefined> => {
        try {
          return await next();
        } catch (e) {
          sourceError = e;
          throw e;
        }
      };
      const first = await take();
      if (first === undefined) return; // nothing to send: no call
      async function* stream(): AsyncGenerator<ChunkInit> {
        for (let c: ChunkInit | undefined = first; c !== undefined; c = await take()) {
          yield c;
          options.onSent?.(c);
        }
      }
      try {
        await client.pushChunks(stream(), callOptions(options));
      } catch (e) {
        throw sourceError ?? fromConnectError(e);
      }
    },
    pull: (ids, options = {}) => pullBatches(client, ids, options),
  };
}

/** PullChunks per batch of ids, each chunk verified; CHUNK_MISSING if the peer left one out. */
async function* pullBatches(
  client: ChunkRpcClient,
  wanted: string[],
  options: ChunkPullOptions,
): AsyncGenerator<ChunkInit> {
  if (!client.pullChunks) throw new PollenError('METHOD_NOT_ALLOWED', 'This API only receives chunks');
  const batch = options.batchSize ?? MAX_IDS_PER_REQUEST;
  const maxChunkBytes = options.maxChunkBytes ?? CHUNK_SIZE;
  for (let i = 0; i < wanted.length; i += batch) {
    const asked = wanted.slice(i, i + batch);
    const pending = new Set(asked);
    const it = client.pullChunks({ chunkIds: asked }, callOptions(options))[Symbol.asyncIterator]();
    try {
      for (;;) {
        let next: IteratorResult<ChunkInit>;
        try {
          next = await it.next();
        } catch (e) {
          throw fromConnectError(e);
        }
        if (next.done) break;
        const { id, data } = next.value;
        if (!pending.has(id)) {
          if (asked.includes(id)) continue; // a repeat: harmless
          throw new PollenError(
            'CHUNK_MISMATCH',
            `The peer sent chunk ${String(id).slice(0, 80)}, which was not requested`,
          );
        }
        verifyChunk(id, data, maxChunkBytes);
        pending.delete(id);
        yield { id, data };
      }
    } finally {
      // Ends the call early when we stop reading (error or consumer break).
      await it.return?.();
    }
    if (pending.size > 0) {
      const left = [...pending];
      throw new PollenError(
        'CHUNK_MISSING',
        `The peer did not send chunk ${left[0]} (${left.length} missing)`,
        {
          data: { chunkIds: left.slice(0, 16) },
        },
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Server side: the three RPCs, identical in every service. Failures are ConnectErrors.

export interface ServeOptions {
  /** Most ids per MissingChunks / PullChunks request (default 1000). */
  maxIds?: number;
}

export interface ServePushOptions {
  /** Largest chunk accepted (default CHUNK_SIZE). */
  maxChunkBytes?: number;
  /** Most chunks in one PushChunks stream (default 10,000: 40 GiB of 4 MiB chunks). */
  maxChunks?: number;
}

function checkIds(ids: string[], maxIds: number): void {
  if (ids.length > maxIds)
    throw new PollenError('PAYLOAD_TOO_LARGE', `At most ${maxIds} chunk ids per request; got ${ids.length}`);
  for (const id of ids) assertChunkId(id);
}

export async function serveMissingChunks(
  store: Pick<ChunkStore, 'missing'>,
  request: { chunkIds: string[] },
  options: ServeOptions = {},
): Promise<{ chunkIds: string[] }> {
  try {
    checkIds(request.chunkIds, options.maxIds ?? MAX_IDS_PER_REQUEST);
    return { chunkIds: await store.missing(request.chunkIds) };
  } catch (e) {
    throw toConnectError(e);
  }
}

/**
 * Store every chunk of the stream after checking its hash and size; any valid chunk is accepted.
 * A relay store (chunks.ts isRelayStore) takes them as named: its readers verify them.
 */
export async function servePushChunks(
  store: ChunkStore,
  stream: AsyncIterable<ChunkInit>,
  options: ServePushOptions = {},
): Promise<{ stored: number; bytes: bigint }> {
  const maxChunkBytes = options.maxChunkBytes ?? CHUNK_SIZE;
  const maxChunks = options.maxChunks ?? 10_000;
  let stored = 0;
  let bytes = 0;
  try {
    for await (const { id, data } of stream) {
      if (stored >= maxChunks)
        throw new PollenError('PAYLOAD_TOO_LARGE', `At most ${maxChunks} chunks per PushChunks call`);
      if (isRelayStore(store)) {
        assertChunkId(id);
        if (data.byteLength > maxChunkBytes)
          throw new PollenError(
            'CHUNK_TOO_LARGE',
            `Chunk ${id} is ${data.byteLength} bytes; at most ${maxChunkBytes} are accepted`,
          );
      } else verifyChunk(id, data, maxChunkBytes);
      if (hasVerifiedPut(store)) await store.putVerified(id, data);
      else await store.put(id, data);
      stored++;
      bytes += data.byteLength;
    }
  } catch (e) {
    throw toConnectError(e);
  }
  return { stored, bytes: BigInt(bytes) };
}

/** Stream the requested chunks; CHUNK_MISSING (NotFound) before sending anything if one is absent. */
export async function* servePullChunks(
  store: Pick<ChunkStore, 'missing' | 'get'>,
  request: { chunkIds: string[] },
  options: ServeOptions = {},
): AsyncGenerator<ChunkInit> {
  const ids = [...new Set(request.chunkIds)];
  try {
    checkIds(request.chunkIds, options.maxIds ?? MAX_IDS_PER_REQUEST);
    const absent = await store.missing(ids);
    if (absent.length > 0)
      throw new PollenError(
        'CHUNK_MISSING',
        `Chunk ${absent[0]} is not held here (${absent.length} missing)`,
        {
          data: { chunkIds: absent.slice(0, 16) },
        },
      );
  } catch (e) {
    throw toConnectError(e);
  }
  for (const id of ids) {
    let data: Uint8Array | undefined;
    try {
      data = await store.get(id);
      // Deleted (gc) or found corrupt since the check above.
      if (data === undefined) throw new PollenError('CHUNK_MISSING', `Chunk ${id} is not held here`);
    } catch (e) {
      throw toConnectError(e);
    }
    yield { id, data };
  }
}
