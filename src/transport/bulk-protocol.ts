/**
 * The bulk chunk route's protocol, shared by its server (bulk-server.ts) and clients
 * (bulk-client.ts): raw chunk bytes as plain HTTP request and response bodies, on the SAME port and
 * TLS session as the Connect services.
 *
 *   PUT /pollen.v1.chunks/{id}   body: the chunk (at most 4 MiB)  → 201, or an error
 *   GET /pollen.v1.chunks/{id}                                    → 200 + the chunk, or an error
 *
 * Why: PushChunks / PullChunks frame every 4 MiB chunk in gRPC and protobuf, which copies it
 * several times on both ends; on loopback that caps model transfer at ~0.1 GB/s where raw TLS
 * moves ~1 GB/s. Here the sender writes its Uint8Array views straight to the stream and the
 * receiver hashes the frames as they arrive.
 *
 * Authentication is the server's own, the same caller its Connect services admit. In node-key
 * mode a Fleet request also carries the session HMAC headers (node-request-auth.ts) computed over
 * method `PUT /pollen.v1.chunks/{id}` (or `GET …`, bulkAuthMethod) and body = the id string: the
 * id names the content, so the MAC binds the request to exactly these bytes.
 *
 * Scope: the `pollen-chunk-run` header names the run whose chunks a request moves, and
 * `pollen-chunk-source` the node whose uploads a reader wants (superlink/relay-chunks.ts). The
 * chunk RPCs carry the same headers.
 *
 * Errors: the HTTP status of the PollenError, its code in the `pollen-error-code` header and
 * `{code, message}` as a JSON body.
 */
import { PollenError } from '../errors.js';
import { ERROR_CODE_HEADER, isErrorCode } from './errors.js';

export const BULK_CHUNK_PREFIX = '/pollen.v1.chunks/';
/** Chunks in flight per transfer: enough to keep a loopback or LAN pipe full. */
export const BULK_CONCURRENCY = 4;

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

/** How the route answers a refusal: the code in a header and `{code, message}` as JSON. */
export function bulkErrorAnswer(e: PollenError): { body: string; headers: Record<string, string> } {
  return {
    body: JSON.stringify({ code: e.code, message: e.message }),
    headers: { [ERROR_CODE_HEADER]: e.code, 'content-type': 'application/json' },
  };
}

/**
 * The PollenError of an answer that is not a success: the code the route sent, or the closest
 * one for a server that is not a Pollen bulk route (an older server, a proxy).
 */
export function bulkResponseError(status: number, code: unknown, body: Buffer[]): PollenError {
  let message = `HTTP ${status}`;
  try {
    const parsed = JSON.parse(Buffer.concat(body).toString('utf8')) as { message?: unknown };
    if (typeof parsed.message === 'string') message = parsed.message;
  } catch {
    // not a Pollen answer
  }
  if (isErrorCode(code)) return new PollenError(code, message);
  // No bulk route there: the caller falls back to the RPCs (isBulkUnsupported).
  if (status === 404 || status === 405 || status === 415) return new PollenError('ROUTE_NOT_FOUND', message);
  if (status === 413) return new PollenError('PAYLOAD_TOO_LARGE', message);
  if (status === 401) return new PollenError('UNAUTHENTICATED', message);
  if (status === 403) return new PollenError('PERMISSION_DENIED', message);
  if (status >= 500) return new PollenError('UNAVAILABLE', message);
  return new PollenError('INVALID_REQUEST', message);
}

/** True for the error that means "this server has no bulk route": fall back to the RPCs. */
export function isBulkUnsupported(e: unknown): boolean {
  return e instanceof PollenError && e.code === 'ROUTE_NOT_FOUND';
}
