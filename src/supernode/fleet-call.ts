/** Fleet API calls as the SuperNode's modules make them: every failure becomes a PollenError. */
import type { Client } from '@connectrpc/connect';
import { isPollenError, PollenError } from '../errors.js';
import type { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { fromConnectError } from '../transport/errors.js';

export type FleetClient = Client<typeof Fleet>;

export async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromConnectError(e);
  }
}

/** A failure of a remote call, as a PollenError. */
export const remoteError = (e: unknown): PollenError => (isPollenError(e) ? e : fromConnectError(e));

/** A failure of local work, as a PollenError (unexpected ones as INTERNAL, with their text). */
export const localError = (e: unknown): PollenError =>
  isPollenError(e) ? e : new PollenError('INTERNAL', String(e));

/**
 * Refusals that pass by themselves: the SuperLink is away, or this node went past its request
 * rate (the SuperLink says when to retry). Retried with backoff; the connection stays.
 */
export const transient = (e: unknown): boolean =>
  isPollenError(e) && (e.code === 'UNAVAILABLE' || e.code === 'RATE_LIMITED');
