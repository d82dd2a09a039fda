/**
 * The server side of the bulk chunk route (bulk-protocol.ts), served on the SAME server, port and
 * TLS session as the Connect services (rpc-server.ts routes `/pollen.v1.chunks/*` here before
 * Connect sees the request).
 *
 * A PUT is hashed frame by frame as it arrives and written to a temp file that is renamed into the
 * DiskChunkStore only when the SHA-256 equals the id (a tampered or cut-short body stores
 * nothing); a relay store keeps the frames as named (its readers verify them). A GET of a file goes
 * from the kernel to the socket (respondWithFile). Several chunks travel at once on one
 * connection, with wide flow-control windows.
 *
 * Authentication is the server's own (`BulkChunkRoute.authorize`), the same caller its Connect
 * services admit: a verified `client` certificate on the Fleet API, an `admin` one on Control,
 * the per-run token on the loopback AppIo APIs, and in node-key mode the session HMAC.
 */
import { createHash } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import {
  type Http2ServerRequest,
  type Http2ServerResponse,
  constants as h2,
  type OutgoingHttpHeaders,
} from 'node:http2';
import { type FailureReporter, PollenError, publicError } from '../errors.js';
import { authorizationHeaders } from './authorization-headers.js';
import { BULK_CHUNK_PREFIX, type BulkMethod, bulkErrorAnswer } from './bulk-protocol.js';
import {
  assertChunkId,
  CHUNK_SIZE,
  type ChunkStore,
  DiskChunkStore,
  hasFramedRead,
  hasVerifiedPut,
  isRelayStore,
} from './chunks.js';
import type { PeerIdentity } from './tls.js';

const WRITE_BATCH = 1 << 20;

export interface BulkRequest {
  method: BulkMethod;
  id: string;
  /** Request headers, lowercase names, first value of each. */
  headers: Record<string, string>;
  /** The verified TLS peer, when the server runs mutual TLS. */
  peer: PeerIdentity | undefined;
  /** Every `authorization` header as received (`headers` holds the first only). */
  authorization: string[];
  /** The caller's address, as the audit trail records it. */
  address?: string | undefined;
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
  /** Serve GET too (default true; false for a service that only receives chunks). */
  get?: boolean;
  /** Largest chunk accepted (default CHUNK_SIZE, 4 MiB). */
  maxChunkBytes?: number;
}

/** Request headers, lowercase names, first value of each. */
export function flatHeaders(h: IncomingHttpHeaders): Record<string, string> {
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
    const request: BulkRequest = {
      method,
      id,
      headers: flatHeaders(req.headers),
      peer,
      authorization: authorizationHeaders(req),
      address: req.socket?.remoteAddress,
    };
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
  const { body, headers } = bulkErrorAnswer(pe);
  answer(req, res, pe.status, body, headers);
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
async function readFrames(
  req: Http2ServerRequest,
  declared: number,
  max: number,
  tooLarge: (n: number) => PollenError,
): Promise<{ frames: Buffer[]; bytes: number }> {
  const limit = Number.isSafeInteger(declared) && declared >= 0 ? declared : undefined;
  const frames: Buffer[] = [];
  let bytes = 0;
  const check = (frame: Buffer): void => {
    bytes += frame.byteLength;
    if (limit !== undefined && bytes > limit)
      throw new PollenError('INVALID_REQUEST', 'The chunk body is longer than its content-length');
    if (bytes > max) throw tooLarge(bytes);
  };
  // One batch at the end: the frames are kept as they came, not written anywhere meanwhile.
  await eachFrame(req, check, async (batch) => void frames.push(...batch), Number.POSITIVE_INFINITY);
  if (limit !== undefined && bytes !== limit)
    throw new PollenError('INVALID_REQUEST', 'The chunk body is shorter than its content-length');
  return { frames, bytes };
}

/**
 * Read a request body frame by frame ('data' events: no re-concatenation by the stream), check
 * each one, and hand them on in batches of about `batchBytes` (the last one at the end), pausing
 * the stream meanwhile.
 */
function eachFrame(
  req: Http2ServerRequest,
  check: (frame: Buffer) => void,
  flush: (batch: Buffer[], bytes: number) => Promise<void>,
  batchBytes = WRITE_BATCH,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let batch: Buffer[] = [];
    let batched = 0;
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
      const n = batched;
      batch = [];
      batched = 0;
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
      batched += frame.byteLength;
      if (batched >= batchBytes) drain();
    };
    req.on('data', onData);
    req.once('end', () => {
      if (failed) return;
      if (batched > 0) drain();
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
