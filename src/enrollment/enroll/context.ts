import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { PollenError } from '../../errors.js';
import { CertServiceHttp, connectionFailure, type Trust } from '../cert-service-http.js';
import type { EnrollEvent, EnrollKitOptions } from '../enroll-client.js';
import type { LoadedKit } from '../kit.js';

/** A kit path as the user sees it: relative to the kit folder. */
export const rel = (kit: LoadedKit, path: string) => relative(kit.dir, path) || path;

export function readIf(path: string): string | null {
  return existsSync(path) ? readFileSync(path, 'utf8') : null;
}

export function seconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** One run of `enrollKit`: the kit, the options, the clock, sleep and randomness, progress, backoff. */
export class Ctx {
  readonly now: () => Date;
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly random: () => number;
  readonly started: number;
  private attempt = 0;

  constructor(
    readonly kit: LoadedKit,
    readonly opts: EnrollKitOptions,
  ) {
    this.now = opts.now ?? (() => new Date());
    this.sleep = opts.sleep ?? ((ms, signal) => delay(ms, undefined, signal ? { signal } : undefined));
    this.random = opts.random ?? Math.random;
    this.started = this.now().getTime();
  }

  emit(e: EnrollEvent): void {
    this.opts.onProgress?.(e);
  }

  waited(): number {
    return this.now().getTime() - this.started;
  }

  /** The next delay: exponential (×1.5) from the first interval, ±20 % jitter, capped; at least `minMs`. */
  nextDelay(minMs: number): number {
    const base = this.opts.pollIntervalMs ?? 2_000;
    const cap = Math.max(this.opts.maxPollIntervalMs ?? 60_000, base);
    const backoff = Math.min(cap, base * 1.5 ** this.attempt) * (0.8 + 0.4 * this.random());
    this.attempt++;
    return Math.round(Math.max(minMs, Math.min(cap, backoff)));
  }

  /**
   * The delay to wait before the next try, shortened so the last try happens at maxWaitMs;
   * undefined when maxWaitMs has passed (give up now).
   */
  clampDelay(ms: number): number | undefined {
    if (this.opts.maxWaitMs === undefined) return ms;
    const left = this.opts.maxWaitMs - this.waited();
    return left <= 0 ? undefined : Math.min(ms, left);
  }

  async wait(ms: number): Promise<void> {
    try {
      this.opts.signal?.throwIfAborted();
      await this.sleep(ms, this.opts.signal);
    } catch (e) {
      throw this.error(e);
    }
  }

  get timeoutMs(): number {
    return this.opts.requestTimeoutMs ?? 30_000;
  }

  /** A client of the Certificate Service at `url` with this run's timeout and cancellation. */
  http(url: string, trust: Trust): CertServiceHttp {
    return new CertServiceHttp({
      url,
      trust,
      timeoutMs: this.timeoutMs,
      ...(this.opts.signal && { signal: this.opts.signal }),
    });
  }

  /** Any failure as a PollenError: a PollenError as it is, CANCELLED once the caller aborted, else classified. */
  error(e: unknown, origin?: string): PollenError {
    if (e instanceof PollenError) return e;
    if (this.opts.signal?.aborted)
      return new PollenError('CANCELLED', 'Enrollment was cancelled', { cause: e });
    return connectionFailure(e, {
      ...(origin !== undefined && { origin }),
      ...(this.opts.signal && { signal: this.opts.signal }),
    });
  }

  /** Run `fn`, trying again with backoff after a retryable failure (see src/errors.ts) until maxWaitMs. */
  async retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        const err = this.error(e);
        if (!err.retryable) throw err;
        const ms = this.clampDelay(this.nextDelay(0));
        if (ms === undefined)
          throw new PollenError(
            err.code,
            `${err.message}; gave up after ${seconds(this.waited())} (${what})`,
            {
              cause: err,
            },
          );
        this.emit({
          kind: 'retrying',
          message: `${what}: ${err.message}; retrying in ${seconds(ms)}`,
          error: err,
          delayMs: ms,
        });
        await this.wait(ms);
      }
    }
  }
}
