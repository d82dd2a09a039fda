/**
 * PullChunks and PushChunks answered directly on the HTTP/2 stream (as grpc-fast.ts answers hot
 * unary calls), for the clients that move chunks over these RPCs rather than the bulk route: an
 * app's Python SDK on the loopback AppIo APIs (grpcio has no plain HTTP client).
 *
 * Why: through Connect, every 4 MiB chunk a client pulls is copied into a fresh protobuf
 * encoding of its `Chunk` message, and every chunk pushed passes Connect's envelope reader and
 * async-iterable pipeline. Here a pulled chunk goes out as a small header (gRPC prefix, the
 * message's id field and the data field's tag and length) followed by the stored bytes
 * themselves, with the stream's backpressure; a pushed chunk is assembled once from its frames
 * and handed to the same servePushChunks checks (size, SHA-256, store) as the Connect route.
 *
 * Checks, limits and errors are chunk-rpc.ts's (servePullChunks, servePushChunks), and the
 * service's own authentication runs first (`authorize`, from the request headers). Only plain
 * gRPC over HTTP/2 takes this path (isFastCandidate); anything else goes to Connect as before.
 */
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { FailureReporter } from '../errors.js';
import {
  ChunkSchema,
  type PullChunksRequest,
  PullChunksRequestSchema,
  PushChunksResponseSchema,
} from '../gen/pollen/v1/records_pb.js';
import { flatHeaders } from './bulk-server.js';
import { type ServePushOptions, servePullChunks, servePushChunks } from './chunk-rpc.js';
import type { ChunkInit } from './chunk-transport.js';
import type { ChunkStore } from './chunks.js';
import { answerError, answerMessage, GRPC_HEADERS, readEnvelope } from './grpc-fast.js';
import { undecodableRequest } from './request-guards.js';

/** A streaming method answered on the HTTP/2 stream; never throws (failures become gRPC errors). */
export interface FastStream {
  /** `/package.Service/Method` */
  readonly path: string;
  serve(req: Http2ServerRequest, res: Http2ServerResponse, report: FailureReporter): Promise<void>;
}

export interface FastChunkOptions {
  /** The service's full name, e.g. `pollen.v1.ClientAppIo`. */
  service: string;
  store: ChunkStore;
  /** The service's own authentication: throws (a PollenError) unless these headers may move chunks. */
  authorize(headers: Record<string, string>): void;
  push?: ServePushOptions;
  /** Largest pushed message (a chunk plus its id). */
  maxMessageBytes: number;
}

/** PullChunks and PushChunks of `o.service` on the direct path. */
export function fastChunkRoutes(o: FastChunkOptions): FastStream[] {
  return [
    {
      path: `/${o.service}/PullChunks`,
      serve: (req, res, report) => servePull(o, req, res, report),
    },
    {
      path: `/${o.service}/PushChunks`,
      serve: (req, res, report) => servePush(o, req, res, report),
    },
  ];
}

async function servePull(
  o: FastChunkOptions,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  report: FailureReporter,
): Promise<void> {
  let chunks: AsyncGenerator<ChunkInit> | undefined;
  try {
    o.authorize(flatHeaders(req.headers));
    const body = await readEnvelope(req, o.maxMessageBytes);
    let request: PullChunksRequest;
    try {
      request = fromBinary(PullChunksRequestSchema, body);
    } catch (e) {
      throw undecodableRequest('PullChunks', e);
    }
    chunks = servePullChunks(o.store, request);
    // The ids are checked before anything is sent: a refusal is a trailers-only answer.
    let next = await chunks.next();
    res.writeHead(200, GRPC_HEADERS);
    for (; !next.done; next = await chunks.next()) {
      const { id, data } = next.value;
      res.write(chunkHeader(id, data.byteLength));
      // The stored bytes themselves go to the stream: no copy into an encoded message.
      if (!res.write(data) && !(await drained(res))) return; // the client went away
    }
    res.addTrailers({ 'grpc-status': '0' });
    res.end();
  } catch (e) {
    answerError(res, e, report);
  } finally {
    await chunks?.return(undefined);
  }
}

async function servePush(
  o: FastChunkOptions,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  report: FailureReporter,
): Promise<void> {
  try {
    o.authorize(flatHeaders(req.headers));
    const result = await servePushChunks(o.store, chunkMessages(req, o.maxMessageBytes), o.push);
    if (res.stream?.destroyed) return;
    answerMessage(res, toBinary(PushChunksResponseSchema, create(PushChunksResponseSchema, result)));
  } catch (e) {
    answerError(res, e, report);
    req.resume(); // the rest of a refused upload is read and dropped
  }
}

/** The gRPC prefix and the fields of a `Chunk` message up to its data's bytes. */
function chunkHeader(id: string, bytes: number): Buffer {
  const idBytes = Buffer.byteLength(id);
  const fields = 1 + varintSize(idBytes) + idBytes + 1 + varintSize(bytes);
  const out = Buffer.allocUnsafe(5 + fields);
  out[0] = 0;
  out.writeUInt32BE(fields + bytes, 1);
  let at = 5;
  out[at++] = 0x0a; // field 1 (id), length-delimited
  at = writeVarint(out, at, idBytes);
  at += out.write(id, at);
  out[at++] = 0x12; // field 2 (data), length-delimited
  writeVarint(out, at, bytes);
  return out;
}

function varintSize(n: number): number {
  let size = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) size++;
  return size;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  let v = n;
  while (v >= 0x80) {
    out[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

/** True once the stream takes data again; false if it closed first. */
function drained(res: Http2ServerResponse): Promise<boolean> {
  const stream = res.stream;
  if (!stream || stream.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => () => {
      stream.off('drain', onDrain);
      stream.off('close', onClose);
      resolve(ok);
    };
    const onDrain = done(true);
    const onClose = done(false);
    stream.once('drain', onDrain);
    stream.once('close', onClose);
  });
}

/**
 * The `Chunk` messages of a gRPC request body, each assembled once into its own buffer from the
 * frames it arrived in (the store keeps it); lengths are checked before anything is allocated.
 */
async function* chunkMessages(req: Http2ServerRequest, maxBytes: number): AsyncGenerator<ChunkInit> {
  const prefix = Buffer.alloc(5);
  let prefixAt = 0;
  let message: Buffer | undefined;
  let messageAt = 0;
  for await (const frame of req as AsyncIterable<Buffer>) {
    let at = 0;
    while (at < frame.byteLength) {
      if (message === undefined) {
        const take = Math.min(5 - prefixAt, frame.byteLength - at);
        frame.copy(prefix, prefixAt, at, at + take);
        prefixAt += take;
        at += take;
        if (prefixAt < 5) break;
        if (prefix[0] !== 0)
          throw new ConnectError('Compressed gRPC messages are not accepted here', Code.Unimplemented);
        const length = prefix.readUInt32BE(1);
        if (length > maxBytes)
          throw new ConnectError(`The message is larger than ${maxBytes} bytes`, Code.ResourceExhausted);
        message = Buffer.allocUnsafe(length);
        messageAt = 0;
        prefixAt = 0;
        if (length === 0) {
          yield decodeChunk(message);
          message = undefined;
          continue;
        }
      }
      const take = Math.min(message.byteLength - messageAt, frame.byteLength - at);
      frame.copy(message, messageAt, at, at + take);
      messageAt += take;
      at += take;
      if (messageAt === message.byteLength) {
        yield decodeChunk(message);
        message = undefined;
      }
    }
  }
  if (message !== undefined || prefixAt > 0)
    throw new ConnectError('The gRPC message is cut short', Code.InvalidArgument);
}

function decodeChunk(message: Buffer): ChunkInit {
  try {
    // `data` is a view of `message` (protobuf-es reads bytes fields as subarrays).
    const { id, data } = fromBinary(ChunkSchema, message);
    return { id, data };
  } catch (e) {
    throw undecodableRequest('PushChunks', e);
  }
}
