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
import type { Message } from '../sdk/message.js';
import {
  BULK_CONCURRENCY,
  type BulkChunkClient,
  bulkOf,
  bulkPull,
  bulkUpload,
  type ChunkScopeHint,
  isBulkUnsupported,
  scopeHeaders,
} from './bulk-chunks.js';
import {
  assertChunkId,
  CHUNK_SIZE,
  type ChunkStore,
  chunkId,
  hasVerifiedPut,
  isRelayStore,
  verifyChunk,
} from './chunks.js';
import { fromConnectError, toConnectError } from './errors.js';
import { SESSION_WINDOW, STREAM_WINDOW } from './rpc-server.js';
import { messagePieces, messageToWire, type ToWireOptions, type ToWireResult } from './wire.js';

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
  /**
   * The run (and, for a reader, the uploading node) the chunks belong to: a SuperLink keeps a
   * run's chunks in scopes of that run (superlink/relay-chunks.ts). Sent as request headers.
   */
  scope?: ChunkScopeHint;
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
  return {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.scope ? { headers: scopeHeaders(options.scope) } : {}),
  };
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
        { signal: options.signal, headers: scopeHeaders(options.scope) },
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

export interface PipelinedUploadOptions extends TransferOptions {
  /**
   * Which chunks are new to the peer, so that each is PUT as soon as it is hashed, without a
   * MissingChunks round trip: `true` for a freshly produced model (a training result), or a
   * test per id (e.g. "not sent before"). The others are asked about with MissingChunks while
   * hashing goes on. A chunk the peer holds after all costs one PUT, which the bulk route answers
   * as soon as it sees the id is held. Default false (ask about every chunk).
   */
  fresh?: boolean | ((id: string) => boolean);
  /** Chunks hashed ahead of the uploads while all of them are busy (default 1). */
  ahead?: number;
  /** Chunks in flight (default BULK_CONCURRENCY, 4). */
  concurrency?: number;
}

export interface PiecesUploadResult extends UploadResult {
  /** The chunk id of every piece, in the order given (repeats included). */
  ids: string[];
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function positiveInt(name: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new PollenError('INVALID_ARGUMENT', `${name} must be ≥ 1`);
  return n;
}

/**
 * Hash `pieces` and upload them at once, overlapped: piece k+1 is hashed while piece k is on the
 * wire (the hasher yields to I/O between pieces and stays at most `ahead` chunks in front of the
 * uploads), so the peer starts receiving after one piece's hash instead of the whole model's.
 * The pieces are sent as they are (views, never copied) and identical pieces once. Resolves with
 * the id of every piece (for messageToWire's `pieceIds`) once every chunk is stored; the first
 * failure rejects, cancels the chunks in flight and stops the hashing.
 *
 * Over the bulk route only; without one (plain Connect clients, or a server without the route)
 * the pieces are hashed first and go through uploadChunks.
 */
export async function uploadPieces(
  client: ChunkPushClient,
  pieces: readonly Uint8Array[],
  options: PipelinedUploadOptions = {},
): Promise<PiecesUploadResult> {
  const batch = batchSizeOf(options);
  const ahead = positiveInt('ahead', options.ahead ?? 1);
  const concurrency = positiveInt('concurrency', options.concurrency ?? BULK_CONCURRENCY);
  const fresh = options.fresh ?? false;
  const isFresh = typeof fresh === 'function' ? fresh : () => fresh;
  const ids: string[] = new Array<string>(pieces.length);
  const viaRpc = async (from: number): Promise<PiecesUploadResult> => {
    for (let i = from; i < pieces.length; i++) ids[i] = chunkId(pieces[i]!);
    const chunks = new Map<string, Uint8Array>();
    ids.forEach((id, i) => {
      if (!chunks.has(id)) chunks.set(id, pieces[i]!);
    });
    return { ids, ...(await uploadChunks(client, chunks, { ...options, bulk: false })) };
  };
  const bulk = bulkOf(client, options.bulk);
  if (!bulk) return viaRpc(0);
  const result: PiecesUploadResult = { ids, sent: 0, bytes: 0, skipped: 0 };
  if (pieces.length === 0) return result;

  const inner = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, inner.signal]) : inner.signal;
  const seen = new Set<string>();
  /** Hashed, to be PUT. */
  const ready: ChunkInit[] = [];
  /** Hashed, to be asked about with MissingChunks. */
  const unchecked: ChunkInit[] = [];
  let hashed = 0;
  let checking = false;
  let failure: { error: unknown } | undefined;
  let waiters: (() => void)[] = [];
  const changed = (): Promise<void> => new Promise((resolve) => waiters.push(resolve));
  const notify = (): void => {
    const w = waiters;
    waiters = [];
    for (const wake of w) wake();
  };
  const fail = (error: unknown): void => {
    if (!failure) {
      failure = { error };
      inner.abort();
    }
    notify();
  };
  const done = (): boolean => hashed === pieces.length && !checking && unchecked.length === 0;

  const check = (): void => {
    if (checking || failure || unchecked.length === 0) return;
    const asked = unchecked.splice(0, batch);
    checking = true;
    client.missingChunks({ chunkIds: asked.map((c) => c.id) }, { ...callOptions(options), signal }).then(
      (res) => {
        const missing = new Set(res.chunkIds);
        for (const c of asked) {
          if (missing.has(c.id)) ready.push(c);
          else result.skipped++;
        }
        checking = false;
        check();
        notify();
      },
      (e) => {
        checking = false;
        fail(fromConnectError(e));
      },
    );
  };

  const hasher = async (): Promise<void> => {
    while (hashed < pieces.length) {
      while (!failure && ready.length + unchecked.length >= ahead) await changed();
      if (failure) return;
      await nextTurn(); // let the socket and the responses move between two hashes
      if (failure) return;
      if (options.signal?.aborted)
        return fail(new PollenError('UNAVAILABLE', 'The chunk transfer was cancelled'));
      const data = pieces[hashed]!;
      const id = chunkId(data);
      ids[hashed++] = id;
      if (!seen.has(id)) {
        seen.add(id);
        if (isFresh(id)) ready.push({ id, data });
        else {
          unchecked.push({ id, data });
          check();
        }
      }
      notify();
    }
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure) return;
      const c = ready.shift();
      if (c === undefined) {
        if (done()) return;
        await changed();
        continue;
      }
      notify(); // room for the hasher
      await bulk.put(c.id, c.data, signal, scopeHeaders(options.scope));
      result.sent++;
      result.bytes += c.data.byteLength;
      options.onProgress?.({
        chunks: result.sent,
        bytes: result.bytes,
        total: seen.size - result.skipped, // grows while hashing goes on
      });
    }
  };

  await Promise.all([
    hasher().catch(fail),
    ...Array.from({ length: concurrency }, () => worker().catch(fail)),
  ]);
  if (failure) {
    if (!isBulkUnsupported(failure.error) || result.sent > 0) throw failure.error;
    bulk.supported = false; // a server without the bulk route: the RPCs send everything
    return viaRpc(hashed);
  }
  return result;
}

export interface MessagesUploadOptions extends PipelinedUploadOptions {
  /** How the messages are cut into chunks (messageToWire's inlineMax and chunkSize). */
  toWire?: Omit<ToWireOptions, 'pieceIds'>;
}

/**
 * messageToWire for each message, with its chunks uploaded while they are hashed (uploadPieces):
 * once this resolves, every chunk the wire messages name is held by the peer, so they can be
 * pushed. The arrays must not change until then (the chunks are views into them).
 */
export async function uploadMessages(
  client: ChunkPushClient,
  messages: readonly Message[],
  options: MessagesUploadOptions = {},
): Promise<{ wires: ToWireResult[]; upload: UploadResult }> {
  const pieces = messages.map((m) => messagePieces(m, options.toWire));
  const { ids, ...upload } = await uploadPieces(client, pieces.flat(), options);
  let at = 0;
  const wires = messages.map((m, k) => {
    const n = pieces[k]!.length;
    at += n;
    return messageToWire(m, { ...options.toWire, pieceIds: ids.slice(at - n, at) });
  });
  return { wires, upload };
}

/** uploadMessages for one message. */
export async function uploadMessage(
  client: ChunkPushClient,
  message: Message,
  options: MessagesUploadOptions = {},
): Promise<ToWireResult & { upload: UploadResult }> {
  const { wires, upload } = await uploadMessages(client, [message], options);
  return { ...wires[0]!, upload };
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
      for await (const chunk of bulkPull(bulk, wanted, maxChunkBytes, {
        signal: options.signal,
        headers: scopeHeaders(options.scope),
      })) {
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

// ---------------------------------------------------------------------------------------------
// HTTP/2 flow control. The defaults (64 KiB windows) cap a stream at about one window per round
// trip; chunk transfers want megabytes in flight.

/** The windows every Pollen HTTP/2 server and client use (rpc-server.ts). */
export { SESSION_WINDOW, STREAM_WINDOW };

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
