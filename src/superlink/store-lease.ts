/**
 * The store lease: one SuperLink owns its database (state.ts keeps hot state in memory, so two
 * would silently diverge). The holder writes one row (holder, expiry) and renews it well before
 * it expires; a second SuperLink finds the row held and refuses to start. A SuperLink that died
 * without releasing it is replaced once the expiry passes, or at once when it ran on this host
 * and its process is gone (a restart by systemd or a container runtime).
 */

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import { PollenError } from '../errors.js';
import type { LinkSchema } from './state-schema.js';

/** How long a lease lasts without renewal; renewed every third of it. */
export const DEFAULT_LEASE_TTL_MS = 30_000;

/** Names this process in the lease row (shown to the SuperLink that is refused). */
export const leaseHolderName = () => `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

/** True for a holder named on this host whose process no longer runs (or is this one: a restart). */
export function holderIsGone(holder: string): boolean {
  const [host, pidText] = holder.split(':');
  const pid = Number(pidText);
  if (host !== hostname() || !Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Where this SuperLink stands with its lease (`LinkState.leaseState`). */
export type LeaseState =
  | { state: 'held' }
  /** Not renewed in time (the store unreachable): another SuperLink may take it over now. */
  | { state: 'expired'; since: number }
  /** Another SuperLink holds it: final, this one must stop. */
  | { state: 'lost' };

export class StoreLease {
  /** When the lease as last written expires. */
  private heldUntil: number;

  private constructor(
    private readonly db: Kysely<LinkSchema>,
    readonly holder: string,
    private readonly ttlMs: number,
    private readonly now: () => number,
    acquiredAt: number,
  ) {
    this.heldUntil = acquiredAt + ttlMs;
  }

  /** Take the lease, or throw STORE_LEASE_HELD while another holder's lease has not expired. */
  static async acquire(
    db: Kysely<LinkSchema>,
    o: { holder: string; ttlMs: number; now: () => number; location: string },
  ): Promise<StoreLease> {
    const at = o.now();
    await db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom('store_lease').selectAll().where('id', '=', 1).executeTakeFirst();
      if (row && row.holder !== o.holder && row.expires_at > at && !holderIsGone(row.holder))
        throw new PollenError(
          'STORE_LEASE_HELD',
          `Another SuperLink (${row.holder}) holds the store at ${o.location} until ${new Date(row.expires_at).toISOString()}`,
          { detail: `holder ${row.holder}, expires ${new Date(row.expires_at).toISOString()}` },
        );
      const values = { holder: o.holder, acquired_at: at, expires_at: at + o.ttlMs };
      if (row) await tx.updateTable('store_lease').set(values).where('id', '=', 1).execute();
      else
        await tx
          .insertInto('store_lease')
          .values({ id: 1, ...values })
          .execute();
    });
    return new StoreLease(db, o.holder, o.ttlMs, o.now, at);
  }

  /** How often `renew` should run. */
  get renewEveryMs(): number {
    return Math.max(1, Math.floor(this.ttlMs / 3));
  }

  /** Extend the lease; false when another SuperLink took it over (this one lost the store). */
  async renew(): Promise<boolean> {
    const until = this.now() + this.ttlMs;
    const r = await this.db
      .updateTable('store_lease')
      .set({ expires_at: until })
      .where('id', '=', 1)
      .where('holder', '=', this.holder)
      .executeTakeFirst();
    const held = Number(r.numUpdatedRows) === 1;
    if (held) this.heldUntil = until;
    return held;
  }

  /** True once the lease as last written has run out (renewals failed meanwhile). */
  get expired(): boolean {
    return this.now() >= this.heldUntil;
  }

  /** When the lease as last written runs out. */
  get expiresAt(): number {
    return this.heldUntil;
  }

  /** Give the lease up at a clean shutdown, so a replacement starts at once. */
  async release(): Promise<void> {
    await this.db.deleteFrom('store_lease').where('id', '=', 1).where('holder', '=', this.holder).execute();
  }
}
