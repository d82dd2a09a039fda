/**
 * What the parts of the LinkState share: the store's types, long lists cut into statements,
 * argument checks and the errors more than one part raises.
 */
import type { Kysely, Transaction } from 'kysely';
import { PollenError } from '../errors.js';
import type { LinkSchema } from './state-schema.js';

export type LinkDb = Kysely<LinkSchema>;
export type Tx = Transaction<LinkSchema>;

/** Rows per statement when a list is long (stays far below SQLite's bound-parameter limit). */
export const CHUNK = 500;

/** `fn` over `items` in slices of CHUNK, one after the other; the results in order. */
export async function inChunks<T, R>(items: readonly T[], fn: (chunk: T[]) => Promise<R[]>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(...(await fn(items.slice(i, i + CHUNK))));
  return out;
}

export function checkId(what: string, v: unknown): void {
  if (typeof v !== 'string' || v === '' || v.length > 256)
    throw new PollenError('INVALID_ARGUMENT', `${what} must be a string of 1-256 characters`);
}

export function unknownNode(nodeId: string): PollenError {
  return new PollenError('NODE_UNKNOWN', `Node ${nodeId} is unknown`, { data: { nodeId } });
}

export function unknownRun(runId: string): PollenError {
  return new PollenError('RUN_NOT_FOUND', `Run ${runId} does not exist`, { data: { runId } });
}
