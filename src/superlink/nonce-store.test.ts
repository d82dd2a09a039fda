/**
 * The replay store on both backends: a signed request's nonce is refused again after the
 * LinkState is reopened (a SuperLink restart) and by a second LinkState on the same store (two
 * SuperLinks sharing one database), and rows go once their window (and the grace) has passed.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { linkStates, T0 } from '../../test/support/link-states.js';
import { NONCE_GRACE_MS, NONCE_SWEEP_MS } from './nonce-store.js';
import type { LinkState } from './state.js';

const WINDOW = 60_000;
const nonce = () => randomBytes(16).toString('base64url');

describe.each(storeBackends('nonces'))('the replay store on %s', (backend, makeUrl) => {
  const { clock, state } = linkStates(backend, makeUrl);
  const claim = (s: LinkState, n: string, ts = clock.t) =>
    s.nonces.claim({ nonce: n, nodeId: 'node-a', expiresAt: ts + WINDOW });

  it('accepts a nonce once and refuses it again after the LinkState is reopened', async () => {
    clock.t = T0;
    const url = await makeUrl();
    const first = await state({ url });
    const [a, b] = [nonce(), nonce()];
    expect(await claim(first, a)).toBe(true);
    expect(await claim(first, a)).toBe(false);
    await first.close();

    clock.t = T0 + WINDOW - 1; // still inside the window of a
    const again = await state({ url });
    expect(await claim(again, a, T0)).toBe(false);
    expect(await claim(again, b)).toBe(true);
    expect(await again.nonces.count()).toBe(2);
  });

  it('lets exactly one of two LinkStates on one store accept each nonce, claimed concurrently', async () => {
    clock.t = T0;
    const url = await makeUrl();
    const [one, two] = [await state({ url }), await state({ url })];
    const nonces = Array.from({ length: 40 }, nonce);
    const results = await Promise.all(nonces.flatMap((n) => [claim(one, n), claim(two, n)]));
    for (let i = 0; i < nonces.length; i++)
      expect([results[2 * i], results[2 * i + 1]].filter(Boolean), `nonce ${i}`).toHaveLength(1);
    expect(await one.nonces.count()).toBe(nonces.length);
  });

  it('deletes nonces a grace period after their window, never before', async () => {
    clock.t = T0;
    const s = await state();
    const old = Array.from({ length: 20 }, nonce);
    for (const n of old) expect(await claim(s, n)).toBe(true);

    // Until a grace past their window a SuperLink whose clock is behind could still accept them.
    clock.t = T0 + WINDOW + NONCE_GRACE_MS;
    expect(await s.nonces.sweep()).toBe(0);
    expect(await claim(s, old[0]!, T0)).toBe(false);
    expect(await s.nonces.count()).toBe(20);
    clock.t += 1;
    expect(await s.nonces.sweep()).toBe(20);
    expect(await s.nonces.count()).toBe(0);
  });

  it('stays bounded under a steady stream of claims, which sweep as they go', async () => {
    clock.t = T0;
    const s = await state();
    const STEP = 5_000;
    const PER_STEP = 2;
    // Rows live their window, the grace and at most one sweep interval past it.
    const bound = PER_STEP * Math.ceil((WINDOW + NONCE_GRACE_MS + NONCE_SWEEP_MS) / STEP + 1);
    let most = 0;
    for (let step = 0; step < 120; step++) {
      for (let i = 0; i < PER_STEP; i++) expect(await claim(s, nonce())).toBe(true);
      most = Math.max(most, await s.nonces.count());
      clock.t += STEP;
    }
    expect(most).toBeLessThanOrEqual(bound);
    expect(most).toBeGreaterThanOrEqual(PER_STEP * ((WINDOW + NONCE_GRACE_MS) / STEP));
  });
});
