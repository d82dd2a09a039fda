/**
 * A request rate per node on the Fleet API: one token bucket per node id, `burst` tokens deep,
 * refilled at `ratePerSecond`. Every Fleet call takes a token once the caller is authenticated:
 * the RPCs through Connect (the interceptor), the direct gRPC path (fleet-service.ts), and each
 * bulk chunk request. A node past its rate is refused with RATE_LIMITED and told when to retry;
 * refusals take no token, so a node that keeps flooding stays refused while the others, each
 * with its own bucket, never notice. A check is a map lookup and a little arithmetic.
 *
 * The defaults (quotas.ts) are far above what a SuperNode does (a heartbeat every 10 s, a long
 * poll every 20 s, per round a few RPCs and one request per 4 MiB chunk): the burst holds the
 * chunks of a multi-GiB model both ways.
 */
import type { Interceptor } from '@connectrpc/connect';
import { PollenError } from '../errors.js';
import { toConnectError } from '../transport/errors.js';
import { callingNodeKey } from './node-identity.js';

/** Buckets kept before idle (full) ones are forgotten; a forgotten bucket starts full anyway. */
const MAX_BUCKETS = 100_000;
const EPSILON = 1e-9;

export interface RateLimiterOptions {
  /** Sustained requests per second per node; 0 turns the limit off. */
  ratePerSecond: number;
  /** Requests a node may make at once above the rate. */
  burst: number;
  /** The clock (tests). */
  now?: () => number;
}

export class RateLimiter {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #perMs: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  #refused = 0;

  constructor(o: RateLimiterOptions) {
    if (!(o.ratePerSecond >= 0) || !(o.burst >= 1))
      throw new PollenError('INVALID_ARGUMENT', 'A request rate needs a rate >= 0 and a burst >= 1');
    this.ratePerSecond = o.ratePerSecond;
    this.burst = o.burst;
    this.#perMs = o.ratePerSecond / 1000;
    this.#now = o.now ?? Date.now;
  }

  /** Take one request of node `nodeId`, or throw RATE_LIMITED (saying when to retry). */
  take(nodeId: string): void {
    if (this.#perMs === 0) return;
    const now = this.#now();
    let b = this.#buckets.get(nodeId);
    if (b === undefined) {
      if (this.#buckets.size >= MAX_BUCKETS) this.#forgetIdle(now);
      b = { tokens: this.burst, at: now };
      this.#buckets.set(nodeId, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.#perMs);
      b.at = now;
    }
    // EPSILON: refills are sums of small fractions; a token due now must not miss by rounding.
    if (b.tokens >= 1 - EPSILON) {
      b.tokens = Math.max(0, b.tokens - 1);
      return;
    }
    this.#refused++;
    const retryAfterMs = Math.ceil((1 - b.tokens) / this.#perMs - EPSILON);
    throw new PollenError(
      'RATE_LIMITED',
      `Node ${nodeId} made more than ${this.ratePerSecond} requests per second (bursts of ${this.burst}); retry in ${retryAfterMs} ms`,
      { data: { retryAfterMs, ratePerSecond: this.ratePerSecond, burst: this.burst } },
    );
  }

  /** Requests refused since start. */
  get refused(): number {
    return this.#refused;
  }

  /** Buckets tracked now (tests). */
  get size(): number {
    return this.#buckets.size;
  }

  #forgetIdle(now: number): void {
    for (const [id, b] of this.#buckets)
      if (b.tokens + (now - b.at) * this.#perMs >= this.burst) this.#buckets.delete(id);
  }
}

/** The Fleet RPCs through Connect: after authentication (it names the node), before the handler. */
export function rateLimitInterceptor(limiter: RateLimiter): Interceptor {
  return (next) => async (req) => {
    const node = req.contextValues.get(callingNodeKey);
    if (node)
      try {
        limiter.take(node.nodeId);
      } catch (e) {
        throw toConnectError(e);
      }
    return next(req);
  };
}

/** A bulk chunk route's `authorize` that also takes the admitted node's token. */
export function rateLimited<R, W extends { nodeId: string }>(
  authorize: (req: R) => W,
  limiter: RateLimiter,
): (req: R) => W {
  return (req) => {
    const who = authorize(req);
    limiter.take(who.nodeId);
    return who;
  };
}
