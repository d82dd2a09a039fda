/**
 * Two corrections to how requests reach Connect's handlers, so that hostile or careless input gets
 * a precise answer instead of looking like a bug or an outage:
 *
 * - Connect answers a request whose message is not valid protobuf with INTERNAL (HTTP 500), the
 *   code Pollen keeps for its own bugs (docs/errors.md). `answerUndecodableAsInvalid` rewrites
 *   exactly that answer to INVALID_ARGUMENT with the Pollen code INVALID_REQUEST, as the fast gRPC
 *   path (grpc-fast.ts) answers it, for gRPC, gRPC-Web and the Connect protocol. Only the error
 *   path is touched: a good request costs nothing.
 * - A deadline header beyond what a timer can hold (2³¹−1 ms, ~24.8 days) would make Node's
 *   setTimeout fire after 1 ms, so a caller asking for "no deadline" got an instant
 *   DEADLINE_EXCEEDED. `clampDeadlineHeaders` caps such headers at the longest timer instead.
 */
import type { IncomingHttpHeaders } from 'node:http2';
import { Code, ConnectError, type ConnectRouter } from '@connectrpc/connect';
import type {
  UniversalHandler,
  UniversalServerRequest,
  UniversalServerResponse,
} from '@connectrpc/connect/protocol';
import { ERROR_CODE_HEADER } from './errors.js';

/** Longest delay setTimeout honours. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
const GRPC_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
// The longest timeout both headers can spell without passing MAX_TIMER_MS (2,147,483 s).
const CLAMPED_GRPC = `${Math.floor(MAX_TIMER_MS / 1000)}S`;
const CLAMPED_CONNECT = String(Math.floor(MAX_TIMER_MS / 1000) * 1000);

/** Cap `grpc-timeout` (gRPC, gRPC-Web) and `connect-timeout-ms` at the longest timer, in place. */
export function clampDeadlineHeaders(headers: IncomingHttpHeaders): void {
  const grpc = headers['grpc-timeout'];
  if (typeof grpc === 'string') {
    const m = /^(\d{1,8})([HMSmun])$/.exec(grpc);
    if (m && Number(m[1]) * GRPC_UNIT_MS[m[2]!]! > MAX_TIMER_MS) headers['grpc-timeout'] = CLAMPED_GRPC;
  }
  const connect = headers['connect-timeout-ms'];
  if (typeof connect === 'string' && /^\d{1,10}$/.test(connect) && Number(connect) > MAX_TIMER_MS)
    headers['connect-timeout-ms'] = CLAMPED_CONNECT;
}

/** The error a request that does not decode as its method's message gets, on every path. */
export function undecodableRequest(methodName: string, cause?: unknown): ConnectError {
  return new ConnectError(
    `INVALID_REQUEST: The ${methodName} request cannot be decoded`,
    Code.InvalidArgument,
    { [ERROR_CODE_HEADER]: 'INVALID_REQUEST' },
    undefined,
    cause,
  );
}

// Connect's own wording for a binary message that does not parse (protocol/serialization.js).
const isParseFailure = (message: string | null | undefined) => !!message?.startsWith('parse binary:');

/** Wrap every handler of the router so an undecodable request is answered INVALID_ARGUMENT. */
export function answerUndecodableAsInvalid(router: ConnectRouter): void {
  const handlers = router.handlers;
  for (let i = 0; i < handlers.length; i++) {
    const inner = handlers[i]!;
    const wrapped = async (req: UniversalServerRequest) => rewrite(inner, req, await inner(req));
    handlers[i] = Object.assign(wrapped, inner) as UniversalHandler;
  }
}

async function rewrite(
  h: UniversalHandler,
  req: UniversalServerRequest,
  res: UniversalServerResponse,
): Promise<UniversalServerResponse> {
  const type = req.header.get('content-type') ?? '';
  const error = undecodableRequest(h.method.name);
  if (type.startsWith('application/grpc-web')) return rewriteGrpcWeb(res, error);
  if (type.startsWith('application/grpc')) {
    const t = res.trailer;
    if (
      t?.get('grpc-status') === String(Code.Internal) &&
      isParseFailure(safeDecode(t.get('grpc-message')))
    ) {
      t.set('grpc-status', String(Code.InvalidArgument));
      t.set('grpc-message', encodeURIComponent(error.rawMessage));
      t.set(ERROR_CODE_HEADER, 'INVALID_REQUEST');
    }
    return res;
  }
  // Connect protocol, unary: an error is a small JSON body with an HTTP status.
  if (
    res.status !== 500 ||
    res.header?.get('content-encoding') ||
    !res.body ||
    res.body instanceof Uint8Array
  )
    return res;
  const bytes = await collect(res.body as AsyncIterable<Uint8Array>);
  let parsed: { code?: string; message?: string } | undefined;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (parsed?.code !== 'internal' || !isParseFailure(parsed.message)) return { ...res, body: once(bytes) };
  const body = Buffer.from(JSON.stringify({ code: 'invalid_argument', message: error.rawMessage }));
  const header = new Headers(res.header);
  header.set('content-length', String(body.byteLength));
  header.set(ERROR_CODE_HEADER, 'INVALID_REQUEST');
  return { ...res, status: 400, header, body: once(body) };
}

/**
 * gRPC-Web carries the status in a trailer frame (flag 0x80) at the end of the body. A request
 * that did not decode produced no message, so its whole body is that one frame.
 */
async function rewriteGrpcWeb(
  res: UniversalServerResponse,
  error: ConnectError,
): Promise<UniversalServerResponse> {
  if (!res.body || res.body instanceof Uint8Array) return res;
  const it = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) return { ...res, body: once(new Uint8Array()) };
  const frame = first.value;
  const replay = async function* () {
    yield frame;
    for (let next = await it.next(); !next.done; next = await it.next()) yield next.value;
  };
  if (frame[0] !== 0x80) return { ...res, body: replay() };
  const text = Buffer.from(frame.subarray(5)).toString('utf8');
  const status = /^grpc-status:\s*(\d+)\s*$/im.exec(text)?.[1];
  const message = /^grpc-message:\s*(.*?)\s*$/im.exec(text)?.[1];
  if (status !== String(Code.Internal) || !isParseFailure(safeDecode(message)))
    return { ...res, body: replay() };
  const trailer = Buffer.from(
    `grpc-status: ${Code.InvalidArgument}\r\ngrpc-message: ${encodeURIComponent(error.rawMessage)}\r\n${ERROR_CODE_HEADER}: INVALID_REQUEST\r\n`,
  );
  const out = Buffer.alloc(5 + trailer.byteLength);
  out[0] = 0x80;
  out.writeUInt32BE(trailer.byteLength, 1);
  trailer.copy(out, 5);
  return { ...res, body: once(out) };
}

function safeDecode(v: string | null | undefined): string | undefined {
  if (v == null) return undefined;
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of body) parts.push(part);
  return Buffer.concat(parts);
}

function once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  return (async function* () {
    yield bytes;
  })();
}
