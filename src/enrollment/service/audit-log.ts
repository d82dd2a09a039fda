import { sql } from 'kysely';
import type { Database } from '../../store/database.js';
import { AUDIT_GENESIS, type AuditEntry, auditHash } from './audit.js';
import type { Tx } from './context.js';
import type { EnrollmentSchema } from './schema.js';

/** The append-only, hash-chained audit log in the store. */
export class AuditLog {
  constructor(private readonly store: Database<EnrollmentSchema>) {}

  /** Append an entry inside the transaction that makes the change it records. */
  async append(
    tx: Tx,
    actor: string,
    action: string,
    subject: string,
    at: Date,
    detail: Record<string, unknown>,
  ): Promise<void> {
    // Replicas on one PostgreSQL database take turns at the end of the chain.
    if (this.store.backend === 'postgres') await sql`SELECT pg_advisory_xact_lock(7268455)`.execute(tx);
    const last = await tx
      .selectFrom('audit')
      .select(['seq', 'hash'])
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    const prev = last ? { seq: Number(last.seq), hash: last.hash } : { seq: 0, hash: AUDIT_GENESIS };
    const entry = { seq: prev.seq + 1, at: at.toISOString(), actor, action, subject, detail };
    await tx
      .insertInto('audit')
      .values({
        seq: entry.seq,
        at: at.getTime(),
        actor,
        action,
        subject,
        detail: JSON.stringify(detail),
        prev_hash: prev.hash,
        hash: auditHash(prev.hash, entry),
      })
      .execute();
  }

  /**
   * Entries after sequence number `after`, oldest first, at most `limit` (checked at the edge);
   * with `keep`, only the entries it keeps (read on in pages until `limit` are found).
   */
  async list(after: number, limit: number, keep?: (e: AuditEntry) => boolean): Promise<AuditEntry[]> {
    if (!keep) return this.page(after, limit);
    const out: AuditEntry[] = [];
    for (let from = after; out.length < limit; ) {
      const page = await this.page(from, 500);
      out.push(...page.filter(keep).slice(0, limit - out.length));
      if (page.length < 500) break;
      from = page[page.length - 1]!.seq;
    }
    return out;
  }

  private async page(after: number, limit: number): Promise<AuditEntry[]> {
    const rows = await this.store.db
      .selectFrom('audit')
      .selectAll()
      .where('seq', '>', after)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      seq: Number(r.seq),
      at: new Date(r.at).toISOString(),
      actor: r.actor,
      action: r.action,
      subject: r.subject,
      detail: JSON.parse(r.detail) as Record<string, unknown>,
      prevHash: r.prev_hash,
      hash: r.hash,
    }));
  }
}
