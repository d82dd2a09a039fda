/**
 * Fleet API calls as the SuperNode's modules make them: every failure becomes a PollenError, and
 * is either transient (retried with backoff) or permanent (the node stops with its code).
 */
import type { Client } from '@connectrpc/connect';
import { type ErrorCode, isPollenError, PollenError } from '../errors.js';
import type { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { type Endpoint, explainCallFailure } from '../transport/call-failure.js';
import { fromConnectError, retryAfterMs } from '../transport/errors.js';

export type FleetClient = Client<typeof Fleet>;

export async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromConnectError(e);
  }
}

/** The bounds of a SuperLink's retry-after that a node follows (one outside is brought to them). */
export const TOLD_WAIT_MS = { min: 50, max: 30_000 };

/**
 * How long to wait before retrying a refusal: as long as the SuperLink said (RATE_LIMITED carries
 * it), within TOLD_WAIT_MS (never a busy loop, never parked for long), plus up to a fifth more so
 * that nodes refused together do not all come back at once; `otherwise` (ms) when it said
 * nothing. `random` in [0, 1).
 */
export function waitBeforeRetry(e: PollenError, otherwise: number, random: number): number {
  const told = retryAfterMs(e);
  if (told === undefined) return otherwise;
  return Math.round(Math.min(Math.max(told, TOLD_WAIT_MS.min), TOLD_WAIT_MS.max) * (1 + random / 5));
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

/**
 * Refusals no retry can change: who the node is (key, registration, site, certificate) or where
 * it connects (the SuperLink's certificate, the address) is wrong until someone fixes it. The node
 * stops with the code, its hint and its exit code. Everything else (the SuperLink away, a bug on
 * its side, the request rate, an expired session) passes and is retried.
 */
const PERMANENT = new Set<ErrorCode>([
  'NODE_AUTH_MISSING',
  'NODE_AUTH_INVALID',
  'NODE_AUTH_STALE',
  'NODE_NOT_REGISTERED',
  'NODE_IDENTITY_MISMATCH',
  'CERT_REVOKED',
  'CERT_EXPIRED',
  'CERT_NOT_ACCEPTED',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'PEER_NOT_SERVER',
  'TLS_FAILED',
  'WRONG_ENDPOINT',
]);

export const permanent = (e: PollenError): boolean => PERMANENT.has(e.code);

/** The Fleet API at `url`, as failures name it and say what to fix. */
export function fleetEndpoint(url: string, tls: Endpoint['tls']): Endpoint {
  return {
    api: "the SuperLink's Fleet API",
    url,
    tls,
    hints: {
      serverCert:
        "The server's certificate does not chain to this node's root CA (the kit's rootCA.pem or --root-ca): check --superlink (or the kit's endpoint) and that the kit belongs to this federation.",
      ourCert:
        "The SuperLink does not trust this node's certificate: it is from another project or CA. Use the kit this federation's admin made for the site (`pollen package verify KIT` checks it).",
      address:
        "--superlink (or the kit's endpoint) must name the SuperLink's Fleet API (port 9092 by default), not its Control API (9093), its ServerAppIo API (9091, loopback only) or the Certificate Service (8443).",
    },
  };
}

/**
 * What a failed Fleet call means (explainCallFailure), with the fix for a node that runs without
 * a key where the SuperLink requires one.
 */
export async function explainFleetFailure(e: unknown, ep: Endpoint, hasKey: boolean): Promise<PollenError> {
  const err = await explainCallFailure(e, ep);
  if (err.code === 'NODE_AUTH_MISSING' && !hasKey)
    return new PollenError(
      'NODE_AUTH_MISSING',
      'The SuperLink admits only registered node keys, and this SuperNode runs without one',
      {
        cause: err,
        hint: 'Start it with --auth-supernode-private-key KEY (or POLLEN_AUTH_SUPERNODE_PRIVATE_KEY): the key whose KEY.pub the federation admin registered (`ssh-keygen -t ecdsa -b 384 -N "" -f KEY` makes one).',
      },
    );
  return err;
}
