import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { ManualClock } from '../../test/support/manual-clock.js';
import { openLinkState } from './state.js';
import { DEFAULT_LEASE_TTL_MS } from './store-lease.js';

describe.each(storeBackends('lease'))('the store lease on %s', (_backend, makeUrl) => {
  it('refuses a second SuperLink while the first holds the lease, with the holder and expiry named', async () => {
    const url = await makeUrl();
    const clock = new ManualClock({ start: Date.UTC(2026, 0, 1) });
    const first = await openLinkState({ url, now: clock.now, leaseHolder: 'link-a:1' });
    const err = await openLinkState({ url, now: clock.now, leaseHolder: 'link-b:2' }).catch((e) => e);
    expect(err).toMatchObject({ code: 'STORE_LEASE_HELD' });
    expect(err.message).toContain('Another SuperLink (link-a:1) holds the store at');
    expect(err.message).toContain(new Date(clock.now() + DEFAULT_LEASE_TTL_MS).toISOString());
    // A renewal pushes the expiry on: still refused past the first expiry.
    await clock.advance(DEFAULT_LEASE_TTL_MS - 1);
    expect(await first.lease.renew()).toBe(true);
    await clock.advance(DEFAULT_LEASE_TTL_MS - 1);
    await expect(openLinkState({ url, now: clock.now, leaseHolder: 'link-b:2' })).rejects.toMatchObject({
      code: 'STORE_LEASE_HELD',
    });
    await first.close();
  });

  it('a clean shutdown releases the lease: the next SuperLink starts at once', async () => {
    const url = await makeUrl();
    const clock = new ManualClock();
    await (await openLinkState({ url, now: clock.now, leaseHolder: 'a' })).close();
    const second = await openLinkState({ url, now: clock.now, leaseHolder: 'b' });
    expect(second.lease.holder).toBe('b');
    await second.close();
  });

  it('a SuperLink that died is replaced after its lease expires, and the dead one learns it lost the store', async () => {
    const url = await makeUrl();
    const clock = new ManualClock();
    const dead = await openLinkState({ url, now: clock.now, leaseHolder: 'dead', leaseTtlMs: 10_000 });
    await clock.advance(10_001);
    const next = await openLinkState({ url, now: clock.now, leaseHolder: 'next' });
    expect(await dead.lease.renew()).toBe(false);
    // The one that lost the lease does not delete the new holder's row on close.
    await dead.close();
    await expect(openLinkState({ url, now: clock.now, leaseHolder: 'third' })).rejects.toMatchObject({
      code: 'STORE_LEASE_HELD',
    });
    await next.close();
  });

  it('takes over at once from a holder on this host whose process is gone (a restart), not from a live one', async () => {
    const url = await makeUrl();
    const clock = new ManualClock();
    const gone = await openLinkState({ url, now: clock.now, leaseHolder: `${hostname()}:2147483646:x` });
    const next = await openLinkState({ url, now: clock.now, leaseHolder: `${hostname()}:${process.pid}:y` });
    expect(next.lease.holder).toBe(`${hostname()}:${process.pid}:y`);
    await gone.close();
    await next.close();
    // A live process on this host (here the parent) keeps its lease.
    const live = await openLinkState({ url, now: clock.now, leaseHolder: `${hostname()}:${process.ppid}:p` });
    await expect(openLinkState({ url, now: clock.now, leaseHolder: 'other' })).rejects.toMatchObject({
      code: 'STORE_LEASE_HELD',
    });
    await live.close();
  });
});

describe('a lease that cannot be renewed', () => {
  it('runs out while the store is away (calls are refused), and is held again once a renewal succeeds', async () => {
    const clock = new ManualClock({ settleMs: 50 });
    const lost: string[] = [];
    const state = await openLinkState({
      url: ':memory:',
      leaseHolder: 'a',
      leaseTtlMs: 3_000,
      leaseClock: clock,
      onLeaseLost: (holder) => lost.push(holder),
    });
    const renew = state.lease.renew.bind(state.lease);
    state.lease.renew = () => Promise.reject(new Error('the store is away'));
    await clock.advance(2_999);
    expect(state.leaseState()).toEqual({ state: 'held' });
    await clock.advance(1);
    expect(state.leaseState()).toEqual({ state: 'expired', since: clock.now() });
    state.lease.renew = renew;
    await clock.advance(1_000);
    expect(state.leaseState()).toEqual({ state: 'held' });
    expect(lost).toEqual([]);
    await state.close();
  });
});
