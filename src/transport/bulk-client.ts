/**
 * The clients of the bulk chunk route (bulk-protocol.ts): single chunks as HTTP/2 streams of the
 * channel's session (loopback cleartext) or as HTTP/1.1 requests on a few keep-alive TLS
 * connections, and bulkChunkTransport, which moves chunk sets over one of them, several chunks in
 * flight, and over the chunk RPCs where the server has no bulk route.
 */
import { createHash } from 'node:crypto';
import type * as http from 'node:http';
import { type ClientHttp2Stream, constants as h2, type OutgoingHttpHeaders } from 'node:http2';
import https from 'node:https';
import { PollenError, toPollenError } from '../errors.js';
import {
  BULK_CONCURRENCY,
  type BulkMethod,
  bulkChunkPath,
  bulkResponseError,
  isBulkUnsupported,
  scopeHeaders,
} from './bulk-protocol.js';
import {
  type ChunkFeed,
  type ChunkInit,
  type ChunkPullOptions,
  type ChunkPushOptions,
  type ChunkTransport,
  transferCancelled,
} from './chunk-transport.js';
import { assertChunkId, CHUNK_SIZE } from './chunks.js';
import { ERROR_CODE_HEADER } from './errors.js';

/** PUT and GET of single chunks; `extra` headers name a chunk scope (scopeHeaders). */
export interface BulkChunkClient {
  /** False once the server answered that it has no bulk route; callers then use the RPCs. */
  supported: boolean;
  /** Send one chunk (written from `data` itself, no copy). Resolves once the peer stored it. */
  put(id: string, data: Uint8Array, signal?: AbortSignal, extra?: Record<string, string>): Promise<void>;
  /** Fetch one chunk, verified against its id (CHUNK_MISMATCH) and `maxBytes` (CHUNK_TOO_LARGE). */
  get(id: string, maxBytes?: number, signal?: AbortSignal, extra?: Record<string, string>): Promise<Buffer>;
}

export interface BulkChunkClientOptions {
  /** Open a request stream on the channel's HTTP/2 session (e.g. Http2SessionManager.request). */
  request(method: string, path: string, headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream>;
  /** Authentication headers for one request (node-key session HMAC, per-run app token). */
  headers?(method: BulkMethod, id: string): Record<string, string>;
}

function transferGone(detail: string, e?: unknown): PollenError {
  return new PollenError('UNAVAILABLE', `The chunk transfer stream ended early (${detail})`, { cause: e });
}

function streamGone(stream: ClientHttp2Stream, e?: unknown): PollenError {
  return transferGone(`code ${stream.rstCode ?? '?'}`, e);
}

function onAbort(
  signal: AbortSignal | undefined,
  stop: () => void,
  reject: (e: unknown) => void,
): () => void {
  if (!signal) return () => {};
  const abort = (): void => {
    reject(transferCancelled());
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
      throw unreachable(e);
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
        else reject(bulkResponseError(status, code, body));
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
        if (status !== 200 || !sink) return reject(bulkResponseError(status, code, frames));
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
          else reject(bulkResponseError(status, res.headers[ERROR_CODE_HEADER], body));
        });
      });
      // After an answer, a broken request only means the server did not need the rest of the body.
      req.on('error', (e) => {
        if (signal?.aborted) reject(transferCancelled());
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
          res.on('end', () => reject(bulkResponseError(status, res.headers[ERROR_CODE_HEADER], body)));
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
        res.on('error', (e) =>
          reject(signal?.aborted ? transferCancelled() : transferGone('response cut short', e)),
        );
        res.on('end', () => {
          try {
            resolve(sink.finish());
          } catch (e) {
            reject(e);
          }
        });
      });
      req.on('error', (e) => reject(signal?.aborted ? transferCancelled() : unreachable(e)));
      req.end();
    });
  }
}

function unreachable(e: unknown): PollenError {
  return e instanceof PollenError ? e : new PollenError('UNAVAILABLE', 'Cannot reach the peer', { cause: e });
}

// ---------------------------------------------------------------------------------------------
// Chunk sets: several chunks in flight

/**
 * The bulk route as a ChunkTransport: chunk bytes over `bulk`, `concurrency` at a time, and
 * MissingChunks over `rpc`. Where the server answers that it has no bulk route (ROUTE_NOT_FOUND),
 * `bulk.supported` turns false and `rpc` moves what is left, now and in later transfers.
 */
export function bulkChunkTransport(bulk: BulkChunkClient, rpc: ChunkTransport): ChunkTransport {
  return {
    get perChunk() {
      return bulk.supported;
    },
    missing: (ids, options) => rpc.missing(ids, options),
    push: (next, options = {}) =>
      bulk.supported ? bulkPush(bulk, rpc, next, options) : rpc.push(next, options),
    pull: (ids, options = {}) => bulkPull(bulk, rpc, ids, options),
  };
}

/** A signal that fires with `outer` or when `inner` is aborted. */
function linked(outer: AbortSignal | undefined, inner: AbortController): AbortSignal {
  return outer ? AbortSignal.any([outer, inner.signal]) : inner.signal;
}

/** PUT every chunk `next` gives, `concurrency` at a time; without a bulk route, `rpc` takes over. */
async function bulkPush(
  bulk: BulkChunkClient,
  rpc: ChunkTransport,
  next: ChunkFeed,
  options: ChunkPushOptions,
): Promise<void> {
  const inner = new AbortController();
  const signal = linked(options.signal, inner);
  const headers = scopeHeaders(options.scope);
  /** Taken from `next` and not yet stored, in the order taken. */
  const unsent: ChunkInit[] = [];
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure) {
      const c = await next();
      if (c === undefined) return;
      unsent.push(c);
      if (failure) return;
      await bulk.put(c.id, c.data, signal, headers);
      unsent.splice(unsent.indexOf(c), 1);
      options.onSent?.(c);
    }
  };
  const n = Math.max(1, options.concurrency ?? BULK_CONCURRENCY);
  await Promise.all(
    Array.from({ length: n }, () =>
      worker().catch((error: unknown) => {
        // The first failure, not the cancellations it causes.
        if (failure) return;
        failure = { error };
        inner.abort();
      }),
    ),
  );
  if (!failure) return;
  if (!isBulkUnsupported(failure.error)) throw failure.error;
  // A server without the bulk route: the RPCs send what it did not store, then the rest.
  bulk.supported = false;
  let replayed = 0;
  await rpc.push(async () => (replayed < unsent.length ? unsent[replayed++] : next()), options);
}

/** GET `ids`, BULK_CONCURRENCY at a time, yielded in order, each verified; else `rpc` pulls. */
async function* bulkPull(
  bulk: BulkChunkClient,
  rpc: ChunkTransport,
  ids: string[],
  options: ChunkPullOptions,
): AsyncGenerator<ChunkInit> {
  let done = 0;
  if (bulk.supported) {
    const inner = new AbortController();
    const signal = linked(options.signal, inner);
    const headers = scopeHeaders(options.scope);
    const maxChunkBytes = options.maxChunkBytes ?? CHUNK_SIZE;
    const inFlight: Promise<Buffer>[] = [];
    let started = 0;
    const start = (): void => {
      const p = bulk.get(ids[started++]!, maxChunkBytes, signal, headers);
      p.catch(() => {}); // observed when awaited; avoid unhandled rejections of cancelled ones
      inFlight.push(p);
    };
    try {
      for (; done < ids.length; done++) {
        while (started < ids.length && inFlight.length < BULK_CONCURRENCY) start();
        const data = await inFlight.shift()!;
        yield { id: ids[done]!, data };
      }
      return;
    } catch (e) {
      if (!isBulkUnsupported(e)) throw e;
      bulk.supported = false; // a server without the bulk route: PullChunks brings the rest
    } finally {
      inner.abort();
    }
  }
  yield* rpc.pull(ids.slice(done), options);
}
