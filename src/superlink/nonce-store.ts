/**
 * The replay store: nonces of signed (ActivateNode) requests, kept in the LinkState store until
 * their timestamp has left the window. The RequestVerifier's memory cache answers first; this
 * table is what makes a refusal survive a SuperLink restart and hold when several SuperLinks
 * share one PostgreSQL: the nonce is the primary key, so an insert that conflicts is a replay,
 * decided atomically by the database.
 *
 * Only signed requests come here (one per session opened). Session requests are MACed under a
 * secret that lives in the SuperLink's memory: replayed after a restart, their session is unknown.
 */
import type { Kysely } from 'kysely';
import type { WriteBatcher } from '../store/batcher.js';
import type { LinkSchema } from './state-schema.js';

/**
 * How long a row outlives its expiry: SuperLinks sharing one store whose clocks differ by less
 * than this never delete a nonce another of them would still accept.
 */
export const NONCE_GRACE_MS = 60_000;
/** Expired rows are deleted by the first claim after this much time since the last sweep. */
export const NONCE_SWEEP_MS = 10_000;

export interface NonceClaim {
  /** 16 random bytes, base64url (checked by the RequestVerifier). */
  nonce: string;
  nodeId: string;
  /** Epoch ms: the request's timestamp + the verifier's window. */
  expiresAt: number;
}

export class NonceStore {
  private sweptAt = Number.NEGATIVE_INFINITY;
  private sweeping: Promise<number> | undefined;

  constructor(
    private readonly db: Kysely<LinkSchema>,
    /** SQLite: claims share the group commit of the node writes (one fsync for many). */
    private readonly batcher: WriteBatcher<LinkSchema> | undefined,
    private readonly now: () => number,
  ) {}

  /**
   * Record a nonce; false if it was already recorded (a replay). On PostgreSQL each claim is
   * its own statement, so two SuperLinks claiming the same nonce wait on the key and exactly one
   * inserts; in a shared batch they could deadlock on two nonces taken in opposite order.
   */
  async claim(c: NonceClaim): Promise<boolean> {
    await this.sweepIfDue();
    const insert = (db: Kysely<LinkSchema>) =>
      db
        .insertInto('node_nonces')
        .values({ nonce: c.nonce, node_id: c.nodeId, expires_at: c.expiresAt })
        .onConflict((oc) => oc.column('nonce').doNothing())
        .executeTakeFirst();
    const r = this.batcher ? await this.batcher.run(insert) : await insert(this.db);
    return Number(r.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  /** Delete the rows past their expiry (and the grace); returns how many went. */
  sweep(): Promise<number> {
    this.sweeping ??= (async () => {
      try {
        const now = this.now();
        const r = await this.db
          .deleteFrom('node_nonces')
          .where('expires_at', '<', now - NONCE_GRACE_MS)
          .executeTakeFirst();
        this.sweptAt = now;
        return Number(r.numDeletedRows);
      } finally {
        this.sweeping = undefined;
      }
    })();
    return this.sweeping;
  }

  /** Rows held now (for tests and metrics). */
  async count(): Promise<number> {
    const r = await this.db
      .selectFrom('node_nonces')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  private async sweepIfDue(): Promise<void> {
    if (this.now() - this.sweptAt >= NONCE_SWEEP_MS) await this.sweep();
  }
}
