/**
 * PollenError ↔ ConnectError, so every RPC service reports failures the same way and clients get
 * back the stable Pollen code. The code travels in the `pollen-error-code` header (and, for
 * humans and for peers that drop metadata, as a `CODE: ` prefix of the message). Internal detail
 * never leaves the process: unexpected errors become INTERNAL with a generic message.
 */
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import {
  ERROR_CODES,
  type ErrorCode,
  type FailureReporter,
  PollenError,
  publicError,
  toPollenError,
} from '../errors.js';
import { tlsFailure } from './tls-failure.js';

export const ERROR_CODE_HEADER = 'pollen-error-code';

/**
 * How long the server asks the client to wait before it retries (whole milliseconds), for a
 * refusal whose data carries `retryAfterMs` (RATE_LIMITED). The client reads it back into the
 * error's `data.retryAfterMs`, so a refused node waits as long as it was told.
 */
export const RETRY_AFTER_HEADER = 'pollen-retry-after-ms';

/** The wait a refusal asks for, in ms (from `data.retryAfterMs`), or undefined. */
export function retryAfterMs(e: PollenError): number | undefined {
  const ms = (e.data as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? Math.ceil(ms) : undefined;
}

// Codes whose HTTP status alone does not pick the right gRPC code.
const OVERRIDES: Partial<Record<ErrorCode, Code>> = {
  FILE_EXISTS: Code.AlreadyExists,
  CA_EXISTS: Code.AlreadyExists,
  ALREADY_ENROLLED: Code.AlreadyExists,
  RATE_LIMITED: Code.ResourceExhausted,
  CHUNK_TOO_LARGE: Code.ResourceExhausted,
  STORAGE_FULL: Code.ResourceExhausted,
  PAYLOAD_TOO_LARGE: Code.ResourceExhausted,
  ROUTE_NOT_FOUND: Code.Unimplemented,
  METHOD_NOT_ALLOWED: Code.Unimplemented,
};

function codeFor(e: PollenError): Code {
  const override = OVERRIDES[e.code];
  if (override !== undefined) return override;
  const status = e.status;
  if (status === 400 || status === 422) return Code.InvalidArgument;
  if (status === 401) return Code.Unauthenticated;
  if (status === 403) return Code.PermissionDenied;
  if (status === 404) return Code.NotFound;
  if (status === 409 || status === 410 || status === 202) return Code.FailedPrecondition;
  if (status === 413 || status === 429) return Code.ResourceExhausted;
  if (status === 502 || status === 503) return Code.Unavailable;
  return Code.Internal;
}

/** A PollenError as a ConnectError: its stable code travels in a header and prefixes the message. */
function connectErrorOf(pe: PollenError): ConnectError {
  const wait = retryAfterMs(pe);
  return new ConnectError(`${pe.code}: ${pe.message}`, codeFor(pe), {
    [ERROR_CODE_HEADER]: pe.code,
    ...(wait === undefined ? {} : { [RETRY_AFTER_HEADER]: String(wait) }),
  });
}

/**
 * Inside a handler: a PollenError becomes a ConnectError with its code; ConnectErrors and
 * anything unexpected pass unchanged, for the server's boundary (`publicConnectError`) to report.
 */
export function toConnectError(e: unknown): unknown {
  if (e instanceof PollenError && e.code !== 'INTERNAL') return connectErrorOf(e);
  return e;
}

/**
 * At a server's edge: what a client may see of any throwable. ConnectErrors (ours, or Connect's
 * own protocol errors) pass; an unexpected failure becomes a bare INTERNAL with a reference that
 * `report` logs with the whole error (publicError).
 */
export function publicConnectError(e: unknown, report: FailureReporter): ConnectError {
  if (e instanceof ConnectError) return e;
  return connectErrorOf(publicError(e, report));
}

/** The outermost interceptor of a server: every failure leaves through publicConnectError. */
export function errorBoundary(report: FailureReporter): Interceptor {
  return (next) => async (req) => {
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (e) {
      throw publicConnectError(e, report);
    }
    if (!res.stream) return res;
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (e) {
          throw publicConnectError(e, report);
        }
      })(),
    };
  };
}

// For errors without a Pollen code (proxies, transport failures, other servers).
const FALLBACK: Partial<Record<Code, ErrorCode>> = {
  [Code.InvalidArgument]: 'INVALID_REQUEST',
  [Code.NotFound]: 'ROUTE_NOT_FOUND',
  [Code.Unimplemented]: 'ROUTE_NOT_FOUND',
  [Code.PermissionDenied]: 'FORBIDDEN',
  [Code.ResourceExhausted]: 'PAYLOAD_TOO_LARGE',
  [Code.Unavailable]: 'UNAVAILABLE',
  [Code.DeadlineExceeded]: 'UNAVAILABLE',
  [Code.Canceled]: 'UNAVAILABLE',
};

/** True for a code of the catalogue (src/errors.ts), e.g. one a peer sent in a header. */
export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && Object.hasOwn(ERROR_CODES, s);
}

/** A check of ours that failed inside the client's TLS or HTTP/2 layer (it keeps its own code). */
function pollenCause(e: unknown): PollenError | undefined {
  let c = (e as { cause?: unknown } | undefined)?.cause;
  for (let depth = 0; c && depth < 8; depth++) {
    if (c instanceof PollenError) return c;
    c = (c as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The PollenError a server sent (code kept), or the closest code for other failures. */
export function fromConnectError(e: unknown): PollenError {
  if (e instanceof PollenError) return e;
  const ours = pollenCause(e);
  if (ours) return ours;
  const tls = tlsFailure(e, { peer: 'the server', trusted: 'the root CA you trust' });
  if (tls) return tls;
  const ce = ConnectError.from(e);
  const header = ce.metadata.get(ERROR_CODE_HEADER);
  if (isErrorCode(header)) {
    const prefix = `${header}: `;
    const message = ce.rawMessage.startsWith(prefix) ? ce.rawMessage.slice(prefix.length) : ce.rawMessage;
    const wait = ce.metadata.get(RETRY_AFTER_HEADER);
    const data = wait !== null && /^\d{1,9}$/.test(wait) ? { retryAfterMs: Number(wait) } : undefined;
    return new PollenError(header, message, { cause: ce, data });
  }
  const code = FALLBACK[ce.code] ?? 'INTERNAL';
  // A refused TLS handshake reaches an HTTP/2 client only as a closed stream or connection.
  const transport = /stream closed|CANCEL|ECONNRESET|socket hang up|ERR_HTTP2|handshake|certificate/i.test(
    ce.rawMessage,
  );
  return new PollenError(code, ce.rawMessage || 'Remote call failed', {
    cause: ce,
    detail: ce.message,
    ...(transport && {
      hint: "The connection was closed: check the address, and that your certificate is from this project's CA, has the right type and is not revoked (the server log says which).",
    }),
  });
}

/** Await a remote call, turning a Connect error back into the PollenError it carries. */
export async function rpc<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (e) {
    throw fromConnectError(e);
  }
}

/** The stable code of any error: a PollenError's, a remote one's, or INTERNAL. */
export function errorCodeOf(e: unknown): ErrorCode {
  if (e instanceof PollenError) return e.code;
  if (e instanceof ConnectError) return fromConnectError(e).code;
  return toPollenError(e).code;
}

/** Wrap an RPC handler so every PollenError leaves as a Connect error with its stable code. */
export function guard<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } catch (e) {
      throw toConnectError(e);
    }
  };
}
