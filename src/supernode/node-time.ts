/**
 * The SuperNode's clock, sleep and randomness, injectable as enroll-client.ts's `Ctx` is: every
 * timed decision of the node (session renewal, heartbeats, poll pacing, backoff, run checks)
 * reads them, so tests drive time instead of waiting for it.
 */
import { setTimeout as delay } from 'node:timers/promises';

export interface NodeTime {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves after `ms`, or sooner (possibly rejecting) once `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Uniform in [0, 1): backoff jitter (ids and tokens come from node:crypto). */
  random(): number;
}

export interface NodeTimeOptions {
  clock?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

export function nodeTime(o: NodeTimeOptions): NodeTime {
  return {
    now: o.clock ?? Date.now,
    sleep: o.sleep ?? ((ms, signal) => delay(ms, undefined, signal ? { signal } : undefined)),
    random: o.random ?? Math.random,
  };
}

/** Sleep until `ms` passed or `signal` aborted, whichever comes first; never rejects. */
export async function pause(time: NodeTime, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  await time.sleep(ms, signal).catch(() => {});
}
