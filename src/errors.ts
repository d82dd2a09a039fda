/**
 * One error type for the whole project. Every failure a user can meet has a stable `code`, a
 * public message (safe to show to a remote peer), a hint that says what to do next, an HTTP
 * status for services and an exit code for the CLI. Internal detail (`detail`, `cause`) stays
 * in server logs and is never sent over the wire.
 */
import { randomBytes } from 'node:crypto';
import { PEOPLE_CODES } from './errors/people-codes.js';
import { RUNTIME_CODES } from './errors/runtime-codes.js';
import { type CodeSpec, ExitCode, RETRY, spec } from './errors/spec.js';
import { TRUST_CODES } from './errors/trust-codes.js';

export { ExitCode } from './errors/spec.js';

/** The catalogue of stable error codes. Adding a code is a public API change: document it. */
export const ERROR_CODES = {
  INTERNAL: spec(500, ExitCode.INTERNAL, 'This is a bug in Pollen; the server log has the detail.', RETRY),
  USAGE: spec(400, ExitCode.USAGE, 'Run the command with --help to see its options.'),
  INVALID_ARGUMENT: spec(400, ExitCode.USAGE, 'Check the value against --help.'),
  INVALID_REQUEST: spec(400, ExitCode.INVALID_INPUT, 'Check the request body against docs/api.md.'),
  PAYLOAD_TOO_LARGE: spec(413, ExitCode.INVALID_INPUT, 'Send a smaller request.'),
  FILE_NOT_FOUND: spec(404, ExitCode.NOT_FOUND, 'Check the path.'),
  FILE_EXISTS: spec(
    409,
    ExitCode.CONFLICT,
    'Choose another output folder or remove the existing files first.',
  ),
  FILE_ACCESS_DENIED: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'Give the user Pollen runs as read and write access to that path (e.g. `chown -R` the folder or volume to it; the images run as uid 10001), or choose another folder.',
  ),
  ...TRUST_CODES,
  ...RUNTIME_CODES,
  ...PEOPLE_CODES,
} as const satisfies Record<string, CodeSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface PollenErrorOptions {
  hint?: string;
  /** Server-side detail; never leaves the process. */
  detail?: string;
  cause?: unknown;
  /** Extra public fields (e.g. a request id for a pending enrollment). */
  data?: Record<string, unknown>;
}

/**
 * Pollen's one error type: a stable `code` (listed in docs/errors.md), a public message and a
 * hint. Apps get it from the SDK and strategies (e.g. `UNAVAILABLE` when too few nodes are up).
 *
 * @example
 * ```ts
 * try {
 *   await strategy.start({ grid, initialArrays, numRounds: 3 });
 * } catch (e) {
 *   if (isPollenError(e) && e.code === 'UNAVAILABLE') console.error(e.message, e.hint);
 *   throw e;
 * }
 * ```
 */
export class PollenError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly detail: string | undefined;
  readonly data: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: PollenErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PollenError';
    this.code = code;
    this.hint = options.hint ?? ERROR_CODES[code].hint;
    this.detail = options.detail;
    this.data = options.data;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  get exitCode(): ExitCode {
    return ERROR_CODES[this.code].exit;
  }

  /** Whether a client may try again later, with backoff (the `retry` column of docs/errors.md). */
  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }

  /** The public form sent over the wire and printed by `--json`; `data` cannot replace the code, message or hint. */
  toJSON(): { code: ErrorCode; message: string; hint: string } & Record<string, unknown> {
    return { ...this.data, code: this.code, message: this.message, hint: this.hint };
  }
}

/**
 * Whether a thrown value is a PollenError (then it has a `code` and a `hint`).
 *
 * @example
 * ```ts
 * if (isPollenError(e)) console.error(`${e.code}: ${e.message}`);
 * ```
 */
export function isPollenError(e: unknown): e is PollenError {
  return e instanceof PollenError;
}

/** Narrow an unknown throwable to a PollenError, keeping unexpected ones as INTERNAL. */
export function toPollenError(e: unknown): PollenError {
  if (e instanceof PollenError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT')
    return new PollenError('FILE_NOT_FOUND', `No such file: ${err.path ?? ''}`.trim());
  if (err?.code === 'EEXIST')
    return new PollenError('FILE_EXISTS', `Already exists: ${err.path ?? ''}`.trim());
  if (err?.code === 'EACCES' || err?.code === 'EPERM' || err?.code === 'EROFS') return accessDenied(err);
  if (err?.code === 'ENOSPC' || err?.code === 'EDQUOT')
    return new PollenError('STORAGE_FULL', 'The disk is full', { cause: e, detail: err.path });
  if (err?.code === 'ECONNREFUSED' || err?.code === 'ENOTFOUND' || err?.code === 'ECONNRESET')
    return new PollenError('UNAVAILABLE', `Cannot reach the service (${err.code})`, { cause: e });
  return new PollenError('INTERNAL', 'Internal error', {
    detail: e instanceof Error ? (e.stack ?? e.message) : String(e),
    cause: e,
  });
}

/** A path this process may not write (or read): names the path and who the process runs as. */
export function accessDenied(err: { code?: string; path?: string }, path = err.path ?? ''): PollenError {
  const what = err.code === 'EROFS' ? 'Read-only file system' : 'Permission denied';
  const user = process.getuid ? ` (Pollen runs as uid ${process.getuid()})` : '';
  return new PollenError('FILE_ACCESS_DENIED', `${what}: ${path}${user}`, { cause: err });
}

/** Logs an unexpected failure under the reference its client was given. */
export type FailureReporter = (reference: string, error: unknown) => void;

/** Error codes of a connection a server opened itself (to its database) that failed. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ECONNRESET']);

/**
 * What a server may tell a client about any throwable. A PollenError is public by design (its
 * code, message, hint and data; `detail` and `cause` stay in the process); anything else — a bug,
 * an OS error naming a file, an INTERNAL — becomes a bare INTERNAL whose message carries only a
 * short reference, and `report` logs the full error under it. A connection the server could not
 * make (its database, most often) is answered the same way as UNAVAILABLE, which a client retries.
 */
export function publicError(e: unknown, report: FailureReporter): PollenError {
  if (e instanceof PollenError && e.code !== 'INTERNAL') return e;
  const reference = randomBytes(5).toString('hex');
  report(reference, e);
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && UNREACHABLE.has(code))
    return new PollenError(
      'UNAVAILABLE',
      `The service cannot reach a system it depends on, such as its database (reference ${reference})`,
      {
        data: { reference },
      },
    );
  return new PollenError('INTERNAL', `Internal error (reference ${reference})`, { data: { reference } });
}
