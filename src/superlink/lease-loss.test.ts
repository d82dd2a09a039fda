/**
 * A SuperLink whose store lease is taken over (a second SuperLink started on the same store):
 * it answers every call STORE_LEASE_LOST, reports not ready with the lease check named, and after
 * the grace stops without writing to the store, its `leaseLost` resolving with the code the
 * process exits with. The lease's clock is the test's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, expect, it } from 'vitest';
import { outcomeOf } from '../../test/support/errors.js';
import { ManualClock } from '../../test/support/manual-clock.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { fleetClientAuth } from '../supernode/fleet-auth.js';
import { openChannel } from '../transport/rpc-client.js';
import { openLinkState } from './state.js';
import { startSuperLink } from './superlink.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-lease-loss-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a SuperLink whose lease another took refuses every call, is not ready, and stops after the grace without writing', async () => {
  const clock = new ManualClock({ settleMs: 50 });
  const local = { host: '127.0.0.1', port: 0 };
  const stateDir = join(dir, 'superlink');
  const superlink = await startSuperLink({
    stateDir,
    fleet: local,
    control: local,
    serverAppIo: local,
    metrics: local,
    nodeAuth: false,
    lease: { ttlMs: 3_000, lostGraceMs: 2_000, clock },
    log: pino({ level: 'silent' }),
  });
  const channel = openChannel({
    baseUrl: superlink.fleetUrl,
    interceptors: [fleetClientAuth({ holder: {}, insecureName: 'site-a' })],
    bulkHeaders: false,
  });
  const fleet = channel.client(Fleet);
  const activate = () => fleet.activateNode({ heartbeatIntervalMs: 10_000, name: 'site-a' });
  expect(await outcomeOf(activate())).toBe('ok');
  // Renewals keep the lease while time passes.
  await clock.advance(10_000);
  expect(superlink.state.leaseState()).toEqual({ state: 'held' });

  // A second SuperLink on the same store: the first's holder names this process, so it takes over
  // at once (as a restart would).
  const url = join(stateDir, 'superlink.db');
  const other = await openLinkState({ url, leaseHolder: 'other-host:1:b' });
  await clock.advance(1_000); // the next renewal finds the lease taken
  expect(superlink.state.leaseState()).toEqual({ state: 'lost' });
  expect(await outcomeOf(activate())).toBe('STORE_LEASE_LOST');
  const ready = await fetch(`${superlink.opsUrl}/readyz`);
  expect(ready.status).toBe(503);
  expect(await ready.json()).toMatchObject({
    status: 'not-ready',
    failing: 'lease',
    checks: { lease: expect.stringContaining('lost its store to another SuperLink') },
  });

  await clock.advance(2_000); // the grace
  const lost = await superlink.leaseLost;
  expect(lost.code).toBe('STORE_LEASE_LOST');
  expect(lost.exitCode).toBe(7);
  await expect(fetch(`${superlink.opsUrl}/healthz`)).rejects.toThrow();
  channel.close();
  // The stopped SuperLink left the new holder's lease alone.
  await expect(openLinkState({ url, leaseHolder: 'third-host:1:c' })).rejects.toMatchObject({
    code: 'STORE_LEASE_HELD',
  });
  await other.close();
});
