/** What each code of the error catalogue (src/errors.ts) says: HTTP status, exit code, hint, retry. */

/** Process exit codes: the one table the CLI uses (documented in docs/cli.md). */
export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  INVALID_INPUT: 3,
  NOT_FOUND: 4,
  UNAUTHORIZED: 5,
  CONFLICT: 6,
  UNAVAILABLE: 7,
  PENDING: 8,
  REJECTED: 9,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface CodeSpec {
  status: number;
  exit: ExitCode;
  hint: string;
  /** A client may try again later, with backoff: the failure is expected to pass. */
  retryable: boolean;
}

export const spec = (
  status: number,
  exit: ExitCode,
  hint: string,
  o: { retryable?: true } = {},
): CodeSpec => ({
  status,
  exit,
  hint,
  retryable: o.retryable ?? false,
});
/** Marks a code whose failure is expected to pass (a service down, overloaded or failing). */
export const RETRY = { retryable: true } as const;
