/**
 * The bulk chunk path: raw chunk bytes as plain HTTP/2 request and response bodies, served on
 * the SAME server, port and TLS session as the Connect services (rpc-server.ts routes
 * `/pollen.v1.chunks/*` here before Connect sees the request).
 *
 *   PUT /pollen.v1.chunks/{id}   body: the chunk (at most 4 MiB)  → 201, or an error
 *   GET /pollen.v1.chunks/{id}                                    → 200 + the chunk, or an error
 *
 * Why: PushChunks / PullChunks frame every 4 MiB chunk in gRPC and protobuf, which copies it
 * several times on both ends; on loopback that caps model transfer at ~0.1 GB/s where raw TLS
 * moves ~1 GB/s. Here the sender writes its Uint8Array views straight to the HTTP/2 stream, the
 * receiver hashes the frames as they arrive and writes them to a temp file that is renamed into
 * the DiskChunkStore only when the SHA-256 equals the id (a tampered or cut-short body stores
 * nothing). Several chunks travel at once on one connection, with wide flow-control windows.
 *
 * Authentication is the server's own (`BulkChunkRoute.authorize`), the same caller its Connect
 * services admit: a verified `client` certificate on the Fleet API, an `admin` one on Control,
 * the per-run token on the loopback AppIo APIs. In node-key mode a Fleet request also carries
 * the session HMAC headers (request-auth.ts) computed over method `PUT /pollen.v1.chunks/{id}`
 * (or `GET …`) and body = the id string: the id names the content, so the MAC binds the request
 * to exactly these bytes.
 *
 * Errors: the HTTP status of the PollenError, its code in the `pollen-error-code` header and
 * `{code, message}` as a JSON body. Connect RPCs stay available for other clients (grpc-js).
 */
import { createHash } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import type * as http from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import {
  type ClientHttp2Stream,
  type Http2ServerRequest,
  type Http2ServerResponse,
  constants as h2,
  type OutgoingHttpHeaders,
} from 'node:http2';
import https from 'node:https';
import {
  ERROR_CODES,
  type ErrorCode,
  type FailureReporter,
  PollenError,
  publicError,
  toPollenError,
} from '../errors.js';
import {
  assertChunkId,
  CHUNK_SIZE,
  type ChunkStore,
  DiskChunkStore,
  hasFramedRead,
  hasVerifiedPut,
  isRelayStore,
} from './chunks.js';
import { ERROR_CODE_HEADER } from './errors.js';
import type { PeerIdentity } from './tls.js';

export const BULK_CHUNK_PREFIX = '/pollen.v1.chunks/';
/** Chunks in flight per transfer: enough to keep a loopback or LAN pipe full. */
export const BULK_CONCURRENCY = 4;
const WRITE_BATCH = 1 << 20;

export type BulkMethod = 'PUT' | 'GET';

/** The request path of chunk `id`. */
export function bulkChunkPath(id: string): string {
  return `${BULK_CHUNK_PREFIX}${id}`;
}

/** The "method" a node-key session HMAC covers for a bulk request (its body is the id). */
export function bulkAuthMethod(method: BulkMethod, id: string): string {
  return `${method} ${BULK_CHUNK_PREFIX}${id}`;
}

export function isBulkChunkRequest(url: string | undefined): boolean {
  return url?.startsWith(BULK_CHUNK_PREFIX) ?? false;
}

// ---------------------------------------------------------------------------------------------
// Server

export interface BulkRequest {
  method: BulkMethod;
  id: string;
  /** Request headers, lowercase names, first value of each. */
  headers: Record<string, string>;
  /** The verified TLS peer, when the server runs mutual TLS. */
  peer: PeerIdentity | undefined;
}

export interface BulkChunkRoute {
  /**
   * Where chunks go and come from: one store, or one per request, chosen from the request and
   * what `authorize` returned (e.g. a run's scope for the caller, superlink/relay-chunks.ts).
   */
  store: ChunkStore | ((req: BulkRequest, caller: unknown) => ChunkStore | Promise<ChunkStore>);
  /**
   * Admit the caller exactly as the server's Connect services would; throw a PollenError to
   * refuse. What it returns (the caller) is handed to `store`.
   */
  authorize(req: BulkRequest): unknown;
  /** Serve GET too (default true; the Control API only receives chunks). */
  get?: boolean;
  /** Largest chunk accepted (default CHUNK_SIZE, 4 MiB). */
  maxChunkBytes?: number;
}

function flatHeaders(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || v === undefined) continue;
    out[k] = Array.isArray(v) ? (v[0] ?? '') : v;
  }
  return out;
}

/** Answer one `/pollen.v1.chunks/*` request; never throws (failures become error responses). */
export async function serveBulkChunk(
  route: BulkChunkRoute,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  peer: PeerIdentity | undefined,
  report: FailureReporter,
): Promise<void> {
  try {
    const method = req.method;
    if (method !== 'PUT' && method !== 'GET')
      throw new PollenError('METHOD_NOT_ALLOWED', `${method} is not allowed on chunks; use PUT or GET`);
    if (method === 'GET' && route.get === false)
      throw new PollenError('METHOD_NOT_ALLOWED', 'This API only receives chunks');
    const id = req.url.slice(BULK_CHUNK_PREFIX.length);
    assertChunkId(id);
    const request: BulkRequest = { method, id, headers: flatHeaders(req.headers), peer };
    const caller = await route.authorize(request);
    const store = typeof route.store === 'function' ? await route.store(request, caller) : route.store;
    if (method === 'GET') await sendChunk(store, id, res);
    else await receiveChunk(route, store, id, req, res);
  } catch (e) {
    fail(req, res, e, report);
  }
}

function fail(req: Http2ServerRequest, res: Http2ServerResponse, e: unknown, report: FailureReporter): void {
  const pe = publicError(e, report);
  if (res.headersSent || res.stream?.destroyed) {
    if (res.stream) res.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    else req.socket?.destroy();
    return;
  }
  const body = JSON.stringify({ code: pe.code, message: pe.message });
  answer(req, res, pe.status, body, {
    [ERROR_CODE_HEADER]: pe.code,
    'content-type': 'application/json',
  });
}

/**
 * Send a whole answer. If the client may still be sending a body we will not read, end its
 * request once the answer is out: on HTTP/2 with RST_STREAM NO_ERROR (RFC 9113 §8.1: the client
 * keeps the response), on HTTP/1.1 by closing the connection after it.
 */
function answer(
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  status: number,
  body: string,
  headers: OutgoingHttpHeaders = {},
): void {
  const unread = !req.readableEnded;
  const http1 = res.stream === undefined;
  res.writeHead(status, {
    ...headers,
    'content-length': Buffer.byteLength(body),
    ...(unread && http1 ? { connection: 'close' } : {}),
  });
  res.end(body);
  if (unread && !http1) res.stream.close(h2.NGHTTP2_NO_ERROR);
}

async function receiveChunk(
  route: BulkChunkRoute,
  store: ChunkStore,
  id: string,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
): Promise<void> {
  const max = route.maxChunkBytes ?? CHUNK_SIZE;
  const tooLarge = (n: number): PollenError =>
    new PollenError('CHUNK_TOO_LARGE', `Chunk ${id} is ${n} bytes or more; at most ${max} are accepted`);
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > max) throw tooLarge(declared);
  if (await store.has(id)) {
    // Content-addressed: held already means these bytes. Answer at once and stop the body, so a
    // sender that skipped MissingChunks (a model it believes new) loses little when it was not.
    answer(req, res, 201, '');
    return;
  }
  // A quota or storage budget refuses before the body is read (the put checks again).
  if (Number.isSafeInteger(declared) && declared >= 0) store.admit?.(declared);
  if (isRelayStore(store)) {
    // A relay keeps the bytes as named, in the frames they came in; its readers verify them.
    const { frames, bytes } = await readFrames(req, declared, max, tooLarge);
    await store.putFrames(id, frames, bytes);
    answer(req, res, 201, '');
    return;
  }
  const hash = createHash('sha256');
  const mismatch = (): PollenError =>
    new PollenError('CHUNK_MISMATCH', `Chunk data does not match its id ${id}`, { data: { chunkId: id } });
  let bytes = 0;
  const check = (frame: Buffer): void => {
    bytes += frame.byteLength;
    if (bytes > max) throw tooLarge(bytes);
    hash.update(frame);
  };
  if (store instanceof DiskChunkStore) {
    // Stream to a temp file, hashing on the way; rename into place only if the hash matches.
    const temp = await store.tempPathFor(id);
    try {
      const fh = await open(temp, 'wx', 0o600);
      try {
        await eachFrame(req, check, async (batch, n) => {
          const { bytesWritten } = await fh.writev(batch);
          if (bytesWritten !== n) throw new PollenError('INTERNAL', `Short write to ${temp}`);
        });
      } finally {
        await fh.close();
      }
      if (hash.digest('hex') !== id) throw mismatch();
      await store.adoptVerified(id, temp);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    }
  } else {
    const frames: Buffer[] = [];
    await eachFrame(req, check, async (batch) => {
      frames.push(...batch);
    });
    if (hash.digest('hex') !== id) throw mismatch();
    const data = frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes);
    if (hasVerifiedPut(store)) await store.putVerified(id, data);
    else await store.put(id, data);
  }
  res.writeHead(201, { 'content-length': 0 });
  res.end();
}

/** The whole body as the frames it arrived in, at most `max` bytes (and content-length exactly). */
function readFrames(
  req: Http2ServerRequest,
  declared: number,
  max: number,
  tooLarge: (n: number) => PollenError,
): Promise<{ frames: Buffer[]; bytes: number }> {
  const limit = Number.isSafeInteger(declared) && declared >= 0 ? declared : undefined;
  const frames: Buffer[] = [];
  let bytes = 0;
  return new Promise((resolve, reject) => {
    const fail = (e: unknown): void => {
      req.off('data', onData);
      req.pause();
      reject(e);
    };
    const onData = (frame: Buffer): void => {
      bytes += frame.byteLength;
      if (limit !== undefined && bytes > limit)
        fail(new PollenError('INVALID_REQUEST', 'The chunk body is longer than its content-length'));
      else if (bytes > max) fail(tooLarge(bytes));
      else frames.push(frame);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (limit !== undefined && bytes !== limit)
        reject(new PollenError('INVALID_REQUEST', 'The chunk body is shorter than its content-length'));
      else resolve({ frames, bytes });
    });
    req.once('error', fail);
    req.once('aborted', () => fail(new PollenError('UNAVAILABLE', 'The sender went away mid-chunk')));
  });
}

/**
 * Read a request body frame by frame ('data' events: no re-concatenation by the stream), check
 * each one, and hand them on in batches of about WRITE_BATCH bytes, pausing the stream meanwhile.
 */
function eachFrame(
  req: Http2ServerRequest,
  check: (frame: Buffer) => void,
  flush: (batch: Buffer[], bytes: number) => Promise<void>,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let failed = false;
    let writing: Promise<void> = Promise.resolve();
    const fail = (e: unknown): void => {
      if (failed) return;
      failed = true;
      req.off('data', onData);
      req.pause();
      reject(e);
    };
    const drain = (): void => {
      const out = batch;
      const n = batchBytes;
      batch = [];
      batchBytes = 0;
      req.pause();
      writing = writing
        .then(() => flush(out, n))
        .then(() => {
          if (!failed) req.resume();
        }, fail);
    };
    const onData = (frame: Buffer): void => {
      if (failed) return;
      try {
        check(frame);
      } catch (e) {
        fail(e);
        return;
      }
      batch.push(frame);
      batchBytes += frame.byteLength;
      if (batchBytes >= WRITE_BATCH) drain();
    };
    req.on('data', onData);
    req.once('end', () => {
      if (failed) return;
      if (batchBytes > 0) drain();
      writing.then(() => {
        if (!failed) resolve();
      }, fail);
    });
    req.once('error', fail);
    req.once('aborted', () => fail(new PollenError('UNAVAILABLE', 'The sender went away mid-chunk')));
  });
}

async function sendChunk(store: ChunkStore, id: string, res: Http2ServerResponse): Promise<void> {
  const headers = { 'content-type': 'application/octet-stream' };
  const missing = (): PollenError => new PollenError('CHUNK_MISSING', `Chunk ${id} is not held here`);
  if (store instanceof DiskChunkStore) {
    const path = store.pathOf(id);
    const stream = res.stream as typeof res.stream | undefined;
    if (stream) {
      // The file goes from the kernel to the TLS socket without passing through JS. It is not
      // re-hashed here: the receiver verifies every chunk against its id (CHUNK_MISMATCH).
      await new Promise<void>((resolve, reject) => {
        stream.respondWithFile(path, headers, {
          onError: (err) => reject((err as NodeJS.ErrnoException).code === 'ENOENT' ? missing() : err),
        });
        stream.once('close', () => resolve());
      });
      return;
    }
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw missing();
      throw e;
    }
    res.writeHead(200, { ...headers, 'content-length': data.byteLength });
    res.end(data);
    return;
  }
  if (hasFramedRead(store)) {
    const frames = await store.getFrames(id);
    if (frames === undefined) throw missing();
    let length = 0;
    for (const f of frames) length += f.byteLength;
    res.writeHead(200, { ...headers, 'content-length': length });
    for (const f of frames) res.write(f);
    res.end();
    return;
  }
  const data = await store.get(id);
  if (data === undefined) throw missing();
  res.writeHead(200, { ...headers, 'content-length': data.byteLength });
  res.end(data);
}

// ---------------------------------------------------------------------------------------------
// Client

/** PUT and GET of single chunks; `extra` headers name a chunk scope (CHUNK_RUN_HEADER…). */
export interface BulkChunkClient {
  /** False once the server answered that it has no bulk route; callers then use the RPCs. */
  supported: boolean;
  /** Send one chunk (written from `data` itself, no copy). Resolves once the peer stored it. */
  put(id: string, data: Uint8Array, signal?: AbortSignal, extra?: Record<string, string>): Promise<void>;
  /** Fetch one chunk, verified against its id (CHUNK_MISMATCH) and `maxBytes` (CHUNK_TOO_LARGE). */
  get(id: string, maxBytes?: number, signal?: AbortSignal, extra?: Record<string, string>): Promise<Buffer>;
}

/** Request headers naming the run whose chunks a transfer moves (the SuperLink's run scopes). */
export const CHUNK_RUN_HEADER = 'pollen-chunk-run';
/** Request header naming the node whose uploaded chunks a reader wants (the ServerApp's replies). */
export const CHUNK_SOURCE_HEADER = 'pollen-chunk-source';

/** Which run (and uploader) a transfer's chunks belong to, as request headers. */
export interface ChunkScopeHint {
  runId: string;
  /** For a reader: the node whose uploads to read (a reply's source). */
  sourceNodeId?: string;
}

export function scopeHeaders(scope: ChunkScopeHint | undefined): Record<string, string> {
  if (!scope) return {};
  return {
    [CHUNK_RUN_HEADER]: scope.runId,
    ...(scope.sourceNodeId ? { [CHUNK_SOURCE_HEADER]: scope.sourceNodeId } : {}),
  };
}

export interface BulkChunkClientOptions {
  /** Open a request stream on the channel's HTTP/2 session (e.g. Http2SessionManager.request). */
  request(method: string, path: string, headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream>;
  /** Authentication headers for one request (node-key session HMAC, per-run app token). */
  headers?(method: BulkMethod, id: string): Record<string, string>;
}

function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && Object.hasOwn(ERROR_CODES, s);
}

function responseError(status: number, code: unknown, body: Buffer[]): PollenError {
  let message = `HTTP ${status}`;
  try {
    const parsed = JSON.parse(Buffer.concat(body).toString('utf8')) as { message?: unknown };
    if (typeof parsed.message === 'string') message = parsed.message;
  } catch {
    // not a Pollen answer
  }
  if (isErrorCode(code)) return new PollenError(code, message);
  // Not a Pollen bulk route (an older server, a proxy): the caller falls back to the RPCs.
  if (status === 404 || status === 405 || status === 415) return new PollenError('ROUTE_NOT_FOUND', message);
  if (status === 413) return new PollenError('PAYLOAD_TOO_LARGE', message);
  if (status === 401) return new PollenError('UNAUTHENTICATED', message);
  if (status === 403) return new PollenError('PERMISSION_DENIED', message);
  if (status >= 500) return new PollenError('UNAVAILABLE', message);
  return new PollenError('INVALID_REQUEST', message);
}

function transferGone(detail: string, e?: unknown): PollenError {
  return new PollenError('UNAVAILABLE', `The chunk transfer stream ended early (${detail})`, { cause: e });
}

function streamGone(stream: ClientHttp2Stream, e?: unknown): PollenError {
  return transferGone(`code ${stream.rstCode ?? '?'}`, e);
}

const cancelled = (): PollenError => new PollenError('UNAVAILABLE', 'The chunk transfer was cancelled');

function onAbort(
  signal: AbortSignal | undefined,
  stop: () => void,
  reject: (e: unknown) => void,
): () => void {
  if (!signal) return () => {};
  const abort = (): void => {
    reject(cancelled());
    stop();
  };
  if (signal.aborted) abort();
  signal.addEventListener('abort', abort, { once: true });
  return () => signal.removeEventListener('abort', abort);
}

/** A downloaded chunk's body: hashed and copied as it arrives, checked against id and size. */
class ChunkSink {
  readonly #hash = createHash('sha256');
  readonly #buf: Buffer | undefined;
  readonly #frames: Buffer[] = [];
  received = 0;

  constructor(
    readonly id: string,
    readonly maxBytes: number,
    length: number,
  ) {
    if (length > maxBytes)
      throw new PollenError(
        'CHUNK_TOO_LARGE',
        `Chunk ${id} is ${length} bytes; at most ${maxBytes} are accepted`,
      );
    if (Number.isSafeInteger(length) && length >= 0) this.#buf = Buffer.allocUnsafe(length);
  }

  push(d: Buffer): void {
    if (this.received + d.byteLength > (this.#buf?.byteLength ?? this.maxBytes))
      throw new PollenError('CHUNK_TOO_LARGE', `Chunk ${this.id} is larger than announced or accepted`);
    this.#hash.update(d);
    if (this.#buf) d.copy(this.#buf, this.received);
    else this.#frames.push(d);
    this.received += d.byteLength;
  }

  /** The verified chunk; throws if it is short or does not hash to its id. */
  finish(): Buffer {
    if (this.#buf && this.received !== this.#buf.byteLength)
      throw transferGone(`${this.received} of ${this.#buf.byteLength} bytes`);
    if (this.#hash.digest('hex') !== this.id)
      throw new PollenError('CHUNK_MISMATCH', `Chunk data does not match its id ${this.id}`, {
        data: { chunkId: this.id },
      });
    return this.#buf ?? Buffer.concat(this.#frames, this.received);
  }
}

/** Bulk requests as streams of the channel's one HTTP/2 session (used without TLS: loopback h2c). */
export class Http2BulkClient implements BulkChunkClient {
  readonly #o: BulkChunkClientOptions;
  supported = true;

  constructor(o: BulkChunkClientOptions) {
    this.#o = o;
  }

  async #open(method: BulkMethod, id: string, extra: OutgoingHttpHeaders): Promise<ClientHttp2Stream> {
    assertChunkId(id);
    try {
      return await this.#o.request(method, bulkChunkPath(id), { ...this.#o.headers?.(method, id), ...extra });
    } catch (e) {
      throw e instanceof PollenError
        ? e
        : new PollenError('UNAVAILABLE', 'Cannot reach the peer', { cause: e });
    }
  }

  async put(
    id: string,
    data: Uint8Array,
    signal?: AbortSignal,
    extra: Record<string, string> = {},
  ): Promise<void> {
    const stream = await this.#open('PUT', id, {
      ...extra,
      'content-type': 'application/octet-stream',
      'content-length': data.byteLength,
    });
    await new Promise<void>((resolve, reject) => {
      let status = 0;
      let code: unknown;
      const body: Buffer[] = [];
      const off = onAbort(signal, () => stream.close(h2.NGHTTP2_CANCEL), reject);
      stream.on('response', (h) => {
        status = Number(h[':status']);
        code = h[ERROR_CODE_HEADER];
      });
      stream.on('data', (d: Buffer) => {
        if (body.length < 64) body.push(d);
      });
      // After a response, a reset only means the server did not need the rest of the body.
      stream.on('error', (e) => {
        if (status === 0) reject(streamGone(stream, e));
      });
      stream.on('close', () => {
        off();
        if (status === 0) reject(streamGone(stream));
        else if (status >= 200 && status < 300) resolve();
        else reject(responseError(status, code, body));
      });
      stream.end(data);
    });
  }

  async get(
    id: string,
    maxBytes = CHUNK_SIZE,
    signal?: AbortSignal,
    extra: Record<string, string> = {},
  ): Promise<Buffer> {
    const stream = await this.#open('GET', id, extra);
    stream.end();
    return await new Promise<Buffer>((resolve, reject) => {
      let status = 0;
      let code: unknown;
      let failure: PollenError | undefined;
      let sink: ChunkSink | undefined;
      const frames: Buffer[] = [];
      const off = onAbort(signal, () => stream.close(h2.NGHTTP2_CANCEL), reject);
      const stop = (e: unknown): void => {
        failure ??= toPollenError(e);
        stream.close(h2.NGHTTP2_CANCEL);
      };
      stream.on('response', (h) => {
        status = Number(h[':status']);
        code = h[ERROR_CODE_HEADER];
        if (status !== 200) return;
        try {
          sink = new ChunkSink(id, maxBytes, Number(h['content-length'] ?? Number.NaN));
        } catch (e) {
          stop(e);
        }
      });
      stream.on('data', (d: Buffer) => {
        if (failure) return;
        if (!sink) {
          if (frames.length < 64) frames.push(d);
          return;
        }
        try {
          sink.push(d);
        } catch (e) {
          stop(e);
        }
      });
      stream.on('error', (e) => {
        failure ??= streamGone(stream, e);
      });
      stream.on('close', () => {
        off();
        if (failure) return reject(failure);
        if (status === 0) return reject(streamGone(stream));
        if (status !== 200 || !sink) return reject(responseError(status, code, frames));
        if (!stream.readableEnded) return reject(streamGone(stream));
        try {
          resolve(sink.finish());
        } catch (e) {
          reject(e);
        }
      });
    });
  }
}

export interface Http1BulkClientOptions {
  /** https://HOST:PORT of the server. */
  baseUrl: string;
  /** Keep-alive agent with the channel's TLS material; its sockets are the transfer's connections. */
  agent: https.Agent;
  /** Authentication headers for one request (node-key session HMAC). */
  headers?(method: BulkMethod, id: string): Record<string, string>;
}

/**
 * Bulk requests as HTTP/1.1 over TLS, a few keep-alive connections to the same port (the server
 * speaks both: ALPN). A chunk body then goes to the TLS socket in full 16 KiB records, without
 * HTTP/2 DATA framing and flow control: ~1.3× the throughput of the HTTP/2 streams on loopback
 * (docs/benchmarks.md). Used for chunk bytes whenever the channel runs TLS.
 */
export class Http1BulkClient implements BulkChunkClient {
  readonly #o: Http1BulkClientOptions;
  readonly #url: URL;
  supported = true;

  constructor(o: Http1BulkClientOptions) {
    this.#o = o;
    this.#url = new URL(o.baseUrl);
  }

  #request(
    method: BulkMethod,
    id: string,
    headers: OutgoingHttpHeaders,
    signal: AbortSignal | undefined,
  ): http.ClientRequest {
    assertChunkId(id);
    return https.request({
      host: this.#url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: this.#url.port,
      method,
      path: bulkChunkPath(id),
      agent: this.#o.agent,
      headers: { ...this.#o.headers?.(method, id), ...headers },
      signal,
    });
  }

  put(id: string, data: Uint8Array, signal?: AbortSignal, extra: Record<string, string> = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let answered = false;
      const req = this.#request(
        'PUT',
        id,
        { ...extra, 'content-type': 'application/octet-stream', 'content-length': data.byteLength },
        signal,
      );
      req.on('response', (res) => {
        answered = true;
        const body: Buffer[] = [];
        res.on('data', (d: Buffer) => {
          if (body.length < 64) body.push(d);
        });
        res.on('error', (e) => reject(transferGone('response cut short', e)));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) resolve();
          else reject(responseError(status, res.headers[ERROR_CODE_HEADER], body));
        });
      });
      // After an answer, a broken request only means the server did not need the rest of the body.
      req.on('error', (e) => {
        if (signal?.aborted) reject(cancelled());
        else if (!answered) reject(unreachable(e));
      });
      req.end(data);
    });
  }

  get(
    id: string,
    maxBytes = CHUNK_SIZE,
    signal?: AbortSignal,
    extra: Record<string, string> = {},
  ): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const req = this.#request('GET', id, extra, signal);
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          const body: Buffer[] = [];
          res.on('data', (d: Buffer) => {
            if (body.length < 64) body.push(d);
          });
          res.on('end', () => reject(responseError(status, res.headers[ERROR_CODE_HEADER], body)));
          return;
        }
        let sink: ChunkSink;
        try {
          sink = new ChunkSink(id, maxBytes, Number(res.headers['content-length'] ?? Number.NaN));
        } catch (e) {
          res.destroy();
          reject(e);
          return;
        }
        res.on('data', (d: Buffer) => {
          try {
            sink.push(d);
          } catch (e) {
            res.destroy();
            reject(e);
          }
        });
        res.on('error', (e) => reject(signal?.aborted ? cancelled() : transferGone('response cut short', e)));
        res.on('end', () => {
          try {
            resolve(sink.finish());
          } catch (e) {
            reject(e);
          }
        });
      });
      req.on('error', (e) => reject(signal?.aborted ? cancelled() : unreachable(e)));
      req.end();
    });
  }
}

function unreachable(e: unknown): PollenError {
  return e instanceof PollenError ? e : new PollenError('UNAVAILABLE', 'Cannot reach the peer', { cause: e });
}

// ---------------------------------------------------------------------------------------------
// Transfers: several chunks in flight

/** Marks a Connect client (of a Pollen channel) as able to use the bulk route of its server. */
export const BULK_CHUNKS: unique symbol = Symbol.for('pollen.bulkChunks') as never;

export interface BulkCapable {
  readonly [BULK_CHUNKS]?: BulkChunkClient;
}

export function withBulk<T extends object>(client: T, bulk: BulkChunkClient): T & BulkCapable {
  Object.defineProperty(client, BULK_CHUNKS, { value: bulk, enumerable: false });
  return client as T & BulkCapable;
}

/** The bulk client a Connect client carries, if it still may be used. */
export function bulkOf(client: object, explicit?: BulkChunkClient | false): BulkChunkClient | undefined {
  if (explicit === false) return undefined;
  const bulk = explicit ?? (client as BulkCapable)[BULK_CHUNKS];
  return bulk?.supported ? bulk : undefined;
}

/** True for the error that means "this server has no bulk route": fall back to the RPCs. */
export function isBulkUnsupported(e: unknown): boolean {
  return e instanceof PollenError && e.code === 'ROUTE_NOT_FOUND';
}

export interface BulkTransferOptions {
  concurrency?: number;
  signal?: AbortSignal;
  /** The chunks' run scope (scopeHeaders), sent with every request. */
  headers?: Record<string, string>;
}

/** PUT every chunk of `ids`, `concurrency` at a time; `onSent` after each one is stored. */
export async function bulkUpload(
  bulk: BulkChunkClient,
  ids: string[],
  get: (id: string) => Promise<Uint8Array | undefined>,
  onSent: (id: string, bytes: number) => void,
  options: BulkTransferOptions = {},
): Promise<void> {
  let next = 0;
  let failed = false;
  const inner = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, inner.signal]) : inner.signal;
  const worker = async (): Promise<void> => {
    while (!failed && next < ids.length) {
      const id = ids[next++]!;
      const data = await get(id);
      if (data === undefined) throw new PollenError('CHUNK_MISSING', `Chunk ${id} is not available to send`);
      await bulk.put(id, data, signal, options.headers);
      onSent(id, data.byteLength);
    }
  };
  const n = Math.max(1, Math.min(options.concurrency ?? BULK_CONCURRENCY, ids.length));
  const results = await Promise.allSettled(
    Array.from({ length: n }, () =>
      worker().catch((e) => {
        failed = true;
        inner.abort();
        throw e;
      }),
    ),
  );
  const first = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (first) {
    // The first real failure, not the cancellations it caused.
    const real = results.find(
      (r): r is PromiseRejectedResult =>
        r.status === 'rejected' && !(r.reason instanceof PollenError && /cancelled/.test(r.reason.message)),
    );
    throw (real ?? first).reason;
  }
}

/**
 * GET the chunks `ids`, `concurrency` at a time, yielded in order, each verified. Stopping early
 * (break, error) cancels what is still in flight.
 */
export async function* bulkPull(
  bulk: BulkChunkClient,
  ids: string[],
  maxChunkBytes: number,
  options: BulkTransferOptions = {},
): AsyncGenerator<{ id: string; data: Uint8Array }> {
  const inner = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, inner.signal]) : inner.signal;
  const n = Math.max(1, options.concurrency ?? BULK_CONCURRENCY);
  const inFlight: Promise<Buffer>[] = [];
  let started = 0;
  const start = (): void => {
    const id = ids[started++]!;
    const p = bulk.get(id, maxChunkBytes, signal, options.headers);
    p.catch(() => {}); // observed when awaited; avoid unhandled rejections of cancelled ones
    inFlight.push(p);
  };
  try {
    for (let done = 0; done < ids.length; done++) {
      while (started < ids.length && inFlight.length < n) start();
      const data = await inFlight.shift()!;
      yield { id: ids[done]!, data };
    }
  } finally {
    inner.abort();
  }
}
