import { describe, expect, it } from 'vitest';
import { isPollenError, type PollenError } from '../errors.js';
import { RateLimiter } from './rate-limit.js';

function refusal(fn: () => void): PollenError | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!isPollenError(e)) throw e;
    return e;
  }
}

describe('RateLimiter', () => {
  it('admits a burst, then refuses with RATE_LIMITED and when to retry; refills at the rate', () => {
    let clock = 1_000;
    const limiter = new RateLimiter({ ratePerSecond: 10, burst: 5, now: () => clock });
    for (let i = 0; i < 5; i++) limiter.take('a');
    const e = refusal(() => limiter.take('a'));
    expect(e?.code).toBe('RATE_LIMITED');
    expect(e?.message).toBe('Node a made more than 10 requests per second (bursts of 5); retry in 100 ms');
    expect(e?.data).toMatchObject({ retryAfterMs: 100 });
    // Refusals take nothing: the token comes when it was said to.
    clock += 99;
    expect(refusal(() => limiter.take('a'))?.data).toMatchObject({ retryAfterMs: 1 });
    clock += 1;
    limiter.take('a');
    expect(refusal(() => limiter.take('a'))?.code).toBe('RATE_LIMITED');
    // The bucket never holds more than the burst.
    clock += 60_000;
    for (let i = 0; i < 5; i++) limiter.take('a');
    expect(refusal(() => limiter.take('a'))?.code).toBe('RATE_LIMITED');
  });

  it('keeps one bucket per node: a flooding node never slows another', () => {
    const clock = 0;
    const limiter = new RateLimiter({ ratePerSecond: 1, burst: 2, now: () => clock });
    limiter.take('flood');
    limiter.take('flood');
    for (let i = 0; i < 100; i++) expect(refusal(() => limiter.take('flood'))?.code).toBe('RATE_LIMITED');
    expect(limiter.refused).toBe(100);
    limiter.take('honest');
    limiter.take('honest');
  });

  it('turns off at rate 0 and forgets idle buckets when it tracks many', () => {
    const off = new RateLimiter({ ratePerSecond: 0, burst: 1 });
    for (let i = 0; i < 1000; i++) off.take('a');
    expect(off.size).toBe(0);
    let clock = 0;
    const limiter = new RateLimiter({ ratePerSecond: 1000, burst: 1, now: () => clock });
    for (let i = 0; i < 100_000; i++) limiter.take(`n${i}`);
    expect(limiter.size).toBe(100_000);
    clock += 1; // all full again: idle
    limiter.take('one-more');
    expect(limiter.size).toBe(1);
    expect(() => new RateLimiter({ ratePerSecond: -1, burst: 1 })).toThrow(/rate/);
  });
});
