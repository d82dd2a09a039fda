/**
 * Moving content-addressed chunks over the three chunk RPCs that Fleet, Control, ServerAppIo and
 * ClientAppIo share (MissingChunks, PushChunks, PullChunks): client helpers that upload only
 * what the peer lacks and verify what they download, and server helpers so that every service
 * answers the three RPCs identically. Memory stays O(chunk): uploads are one PushChunks stream fed
 * by a generator that yields one chunk at a time (connect-node writes the next message only once
 * the previous one was handed to the socket), downloads hand each chunk on as it arrives.
 *
 * When the client comes from a Pollen channel (rpc-client.ts openChannel), the chunk bytes go over
 * the server's bulk route instead (bulk-chunks.ts: one plain HTTP/2 PUT or GET per chunk, several
 * in flight, on the same connection), which moves them several times faster than the RPCs.
 * MissingChunks stays an RPC. Other clients (grpc-js, plain Connect clients) use the RPCs.
 */
import type * as http2 from 'node:http2';
import type { CallOptions } from '@connectrpc/connect';
import { Http2SessionManager, type Http2SessionOptions } from '@connectrpc/connect-node';
import { PollenError } from '../errors.js';
import { type BulkChunkClient, bulkOf, bulkPull, bulkUpload, isBulkUnsupported } from './bulk-chunks.js';
import { assertChunkId, CHUNK_SIZE, type ChunkStore, hasVerifiedPut, verifyChunk } from './chunks.js';
import { fromConnectError, toConnectError } from './errors.js';

export interface ChunkInit {
  id: string;
  data: Uint8Array;
}

/** What uploadChunks needs of a Connect client (any of the four services fits). */
export interface ChunkPushClient {
  missingChunks(request: { chunkIds: string[] }, options?: CallOptions): Promise<{ chunkIds: string[] }>;
  pushChunks(request: AsyncIterable<ChunkInit>, options?: CallOptions): Promise<unknown>;
}

/** What downloadChunks needs of a Connect client. */
export interface ChunkPullClient {
  pullChunks(request: { chunkIds: string[] }, options?: CallOptions): AsyncIterable<ChunkInit>;
}

/** Most ids per MissingChunks / PullChunks request. */
export const MAX_IDS_PER_REQUEST = 1000;

export interface TransferProgress {
  /** Chunks sent or received so far. */
  chunks: number;
  bytes: number;
  /** Chunks this transfer will move. */
  total: number;
}

export interface TransferOptions {
  onProgress?: (progress: TransferProgress) => void;
  signal?: AbortSignal;
  /** Ids per MissingChunks / PullChunks request (default and most: 1000). */
  batchSize?: number;
  /**
   * The bulk route to move chunk bytes over (default: the one the client carries, if it comes
   * from openChannel); false forces the PushChunks / PullChunks RPCs.
   */
  bulk?: BulkChunkClient | false;
}

export type UploadSource = Map<string, Uint8Array> | { ids: string[]; source: Pick<ChunkStore, 'get'> };

export interface UploadResult {
  /** Chunks pushed. */
  sent: number;
  bytes: number;
  /** Chunks the peer already held. */
  skipped: number;
}

function batchSizeOf(options: TransferOptions): number {
  const n = options.batchSize ?? MAX_IDS_PER_REQUEST;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_IDS_PER_REQUEST)
    throw new PollenError('INVALID_ARGUMENT', `batchSize must be 1-${MAX_IDS_PER_REQUEST}`);
  return n;
}

function callOptions(options: TransferOptions): CallOptions {
  return options.signal === undefined ? {} : { signal: options.signal };
}

/**
 * Send the chunks the peer lacks: MissingChunks in batches, then ONE PushChunks stream of only the
 * missing chunks, read from `chunks` one at a time.
 */
export async function uploadChunks(
  client: ChunkPushClient,
  chunks: UploadSource,
  options: TransferOptions = {},
): Promise<UploadResult> {
  const batch = batchSizeOf(options);
  const ids = [...new Set(chunks instanceof Map ? chunks.keys() : chunks.ids)];
  for (const id of ids) assertChunkId(id);
  const missing: string[] = [];
  try {
    for (let i = 0; i < ids.length; i += batch) {
      const asked = ids.slice(i, i + batch);
      const res = await client.missingChunks({ chunkIds: asked }, callOptions(options));
      // Only ever push what we asked about, whatever the peer answers.
      const askedSet = new Set(asked);
      for (const id of new Set(res.chunkIds)) if (askedSet.has(id)) missing.push(id);
    }
  } catch (e) {
    throw fromConnectError(e);
  }
  const result: UploadResult = { sent: 0, bytes: 0, skipped: ids.length - missing.length };
  if (missing.length === 0) return result;
  const get = async (id: string): Promise<Uint8Array | undefined> =>
    chunks instanceof Map ? chunks.get(id) : chunks.source.get(id);
  const bulk = bulkOf(client, options.bulk);
  if (bulk) {
    try {
      await bulkUpload(
        bulk,
        missing,
        get,
        (_id, bytes) => {
          result.sent++;
          result.bytes += bytes;
          options.onProgress?.({ chunks: result.sent, bytes: result.bytes, total: missing.length });
        },
        { signal: options.signal },
      );
      return result;
    } catch (e) {
      if (!isBulkUnsupported(e)) throw e;
      bulk.supported = false; // a server without the bulk route: the RPCs send everything again
      result.sent = 0;
      result.bytes = 0;
    }
  }
  // Errors of the source are kept apart: connect would report them as its own.
  let sourceError: unknown;
  async function* stream(): AsyncGenerator<ChunkInit> {
    for (const id of missing) {
      let data: Uint8Array | undefined;
      try {
        data = await get(id);
        if (data === undefined)
          throw new PollenError('CHUNK_MISSING', `Chunk ${id} is not available to send`);
      } catch (e) {
        sourceError = e;
        throw e;
      }
      yield { id, data };
      result.sent++;
      result.bytes += data.byteLength;
      options.onProgress?.({ chunks: result.sent, bytes: result.bytes, total: missing.length });
    }
  }
  try {
    await client.pushChunks(stream(), callOptions(options));
  } catch (e) {
    throw sourceError ?? fromConnectError(e);
  }
  return result;
}

export interface PullOptions extends TransferOptions {
  /** Largest chunk accepted from the peer (default CHUNK_SIZE). */
  maxChunkBytes?: number;
}

/**
 * The chunks `ids`, hash-verified, as they arrive (one PullChunks call per batch of ids). Throws
 * CHUNK_MISMATCH on a bad or unrequested chunk and CHUNK_MISSING if the peer left some out.
 * Usable directly as the chunk stream of messageFromWireStreaming (with `verified: true`).
 */
export async function* pullChunkStream(
  client: ChunkPullClient,
  ids: string[],
  options: PullOptions = {},
): AsyncGenerator<ChunkInit> {
  const batch = batchSizeOf(options);
  const maxChunkBytes = options.maxChunkBytes ?? CHUNK_SIZE;
  const wanted = [...new Set(ids)];
  for (const id of wanted) assertChunkId(id);
  let chunks = 0;
  let bytes = 0;
  const bulk = bulkOf(client, options.bulk);
  if (bulk && wanted.length > 0) {
    try {
      for await (const chunk of bulkPull(bulk, wanted, maxChunkBytes, { signal: options.signal })) {
        chunks++;
        bytes += chunk.data.byteLength;
        yield chunk;
        options.onProgress?.({ chunks, bytes, total: wanted.length });
      }
      return;
    } catch (e) {
      if (!isBulkUnsupported(e) || chunks > 0) throw e;
      bulk.supported = false; // a server without the bulk route: use PullChunks
    }
  }
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
        chunks++;
        bytes += data.byteLength;
        yield { id, data };
        options.onProgress?.({ chunks, bytes, total: wanted.length });
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

export interface DownloadResult {
  received: number;
  bytes: number;
  /** Chunks the store already held (only when `into` is a store). */
  skipped: number;
}

/**
 * Fetch chunks into a store (only those it lacks) or hand each verified chunk to a callback,
 * e.g. one that copies it into a preallocated array.
 */
export async function downloadChunks(
  client: ChunkPullClient,
  ids: string[],
  into: ChunkStore | ((id: string, data: Uint8Array) => void | Promise<void>),
  options: PullOptions = {},
): Promise<DownloadResult> {
  const unique = [...new Set(ids)];
  const wanted = typeof into === 'function' ? unique : await into.missing(unique);
  const result: DownloadResult = { received: 0, bytes: 0, skipped: unique.length - wanted.length };
  for await (const { id, data } of pullChunkStream(client, wanted, options)) {
    if (typeof into === 'function') await into(id, data);
    else if (hasVerifiedPut(into)) await into.putVerified(id, data);
    else await into.put(id, data);
    result.received++;
    result.bytes += data.byteLength;
  }
  return result;
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

/** Store every chunk of the stream after checking its hash and size; any valid chunk is accepted. */
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
      verifyChunk(id, data, maxChunkBytes);
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

// ---------------------------------------------------------------------------------------------
// HTTP/2 flow control. The defaults (64 KiB windows) cap a stream at about one window per round
// trip; chunk transfers want megabytes in flight.

const MiB = 1024 * 1024;
/** Per-stream window advertised in SETTINGS (initialWindowSize). */
export const STREAM_WINDOW = 16 * MiB;
/** Connection-level receive window, set with setLocalWindowSize. */
export const SESSION_WINDOW = 64 * MiB;

/** Settings for http2.createSecureServer / http2.connect. */
export const HTTP2_SETTINGS: http2.Settings = Object.freeze({ initialWindowSize: STREAM_WINDOW });

/** Widen the connection window of every session a server accepts. */
export function widenServerWindows(server: http2.Http2Server | http2.Http2SecureServer): void {
  server.on('session', (session: http2.ServerHttp2Session) => {
    session.setLocalWindowSize(SESSION_WINDOW);
  });
}

/**
 * A connect-node session manager whose connections have wide receive windows (for downloads):
 * pass it as `sessionManager` to createGrpcTransport. `http2SessionOptions` are those of
 * http2.connect (e.g. `{ ca }`); HTTP2_SETTINGS are added.
 */
export class WideWindowSessionManager extends Http2SessionManager {
  readonly #widened = new WeakSet<http2.ClientHttp2Session>();

  constructor(
    url: URL | string,
    pingOptions?: Http2SessionOptions,
    http2SessionOptions: http2.SecureClientSessionOptions = {},
  ) {
    super(url, pingOptions, {
      ...http2SessionOptions,
      settings: { ...HTTP2_SETTINGS, ...http2SessionOptions.settings },
    });
  }

  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, 'signal'>,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session as http2.ClientHttp2Session | undefined;
    if (session !== undefined && !session.destroyed && !this.#widened.has(session)) {
      this.#widened.add(session);
      session.setLocalWindowSize(SESSION_WINDOW);
    }
    return stream;
  }
}
