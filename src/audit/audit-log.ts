import { type Kysely, sql, type Transaction } from 'kysely';
import type { Backend } from '../store/database.js';
import type { Checkpoint } from './checkpoint.js';
import {
  AUDIT_GENESIS,
  type AuditEntry,
  type AuditRecord,
  type ListedEntry,
  redact,
  sealEntry,
} from './entry.js';
import type { AuditSchema } from './schema.js';

/** Which entries a reader asks for; all optional. */
export interface AuditFilter {
  /** Only entries after this sequence number. */
  after?: number;
  /** Only entries at or after this time. */
  since?: Date;
  /** Only this actor (subject or name). */
  actor?: string;
  federation?: string;
  /** Whether the caller may see an entry (an organisation's scope); default: all. */
  visible?: (e: AuditEntry) => boolean;
  /**
   * What becomes of entries the caller may not see: left out (a listing), or given redacted, so
   * the whole chain can still be checked (`pollen audit verify`).
   */
  hidden?: 'skip' | 'redact';
}

type Row = AuditSchema['audit'];

/** A service's store, whatever its other tables: the audit tables are in it (schema.ts). */
export interface AuditStore {
  readonly db: object;
  readonly backend: Backend;
}

function entryOf(r: Row): AuditEntry {
  return {
    seq: Number(r.seq),
    at: new Date(Number(r.at)).toISOString(),
    actor: r.actor,
    actorName: r.actor_name,
    actorOrg: r.actor_org,
    auth: r.auth,
    address: r.address,
    action: r.action,
    target: r.subject,
    outcome: r.outcome,
    federation: r.federation,
    detail: JSON.parse(r.detail) as Record<string, unknown>,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

function checkpointOf(r: AuditSchema['audit_checkpoints']): Checkpoint {
  return {
    component: r.component,
    seq: Number(r.seq),
    hash: r.hash,
    at: new Date(Number(r.at)).toISOString(),
    signature: r.signature,
    certificate: r.certificate,
  };
}

/** A page of entries read at a time while filtering. */
const PAGE = 500;

/**
 * The append-only, hash-chained audit log in a service's store (the SuperLink's and the
 * Certificate Service's), and the checkpoints that anchor its head.
 */
export class AuditLog {
  private readonly db: Kysely<AuditSchema>;

  constructor(private readonly store: AuditStore) {
    this.db = store.db as unknown as Kysely<AuditSchema>;
  }

  /** Append an entry inside the transaction that makes the change it records. */
  async append<S extends AuditSchema>(txOf: Transaction<S>, r: AuditRecord): Promise<AuditEntry> {
    const tx = txOf as unknown as Transaction<AuditSchema>;
    // Replicas on one PostgreSQL database take turns at the end of the chain.
    if (this.store.backend === 'postgres') await sql`SELECT pg_advisory_xact_lock(7268455)`.execute(tx);
    const prev = (await this.headIn(tx)) ?? { seq: 0, hash: AUDIT_GENESIS };
    const e = sealEntry(prev.seq + 1, prev.hash, r);
    await tx
      .insertInto('audit')
      .values({
        seq: e.seq,
        at: r.at.getTime(),
        actor: e.actor,
        action: e.action,
        subject: e.target,
        detail: JSON.stringify(e.detail),
        prev_hash: e.prevHash,
        hash: e.hash,
        actor_name: e.actorName,
        actor_org: e.actorOrg,
        auth: e.auth,
        address: e.address,
        outcome: e.outcome,
        federation: e.federation,
      })
      .execute();
    return e;
  }

  /** Append an entry in a transaction of its own (a call that changed nothing, a refusal). */
  record(r: AuditRecord): Promise<AuditEntry> {
    return this.db.transaction().execute((tx) => this.append(tx, r));
  }

  /** The last entry's sequence number and hash; null while the log is empty. */
  head(): Promise<{ seq: number; hash: string } | null> {
    return this.headIn(this.db);
  }

  private async headIn(db: Kysely<AuditSchema>): Promise<{ seq: number; hash: string } | null> {
    const last = await db
      .selectFrom('audit')
      .select(['seq', 'hash'])
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    return last ? { seq: Number(last.seq), hash: last.hash } : null;
  }

  /** Entries matching `f`, oldest first, at most `limit` (checked at the edge). */
  async list(f: AuditFilter, limit: number): Promise<ListedEntry[]> {
    const out: ListedEntry[] = [];
    const redacting = f.hidden === 'redact' && f.visible !== undefined;
    const pick = (e: AuditEntry): ListedEntry | undefined => {
      if (f.actor !== undefined && e.actor !== f.actor && e.actorName !== f.actor) return undefined;
      if (f.federation !== undefined && e.federation !== f.federation) return undefined;
      if (f.visible === undefined || f.visible(e)) return e;
      return redacting ? redact(e) : undefined;
    };
    const plain = f.actor === undefined && f.federation === undefined && (!f.visible || redacting);
    for (let from = f.after ?? 0; out.length < limit; ) {
      const page = await this.page(from, f.since, plain ? limit - out.length : PAGE);
      for (const e of page) {
        const listed = out.length < limit ? pick(e) : undefined;
        if (listed) out.push(listed);
      }
      if (plain || page.length < PAGE) break;
      from = page[page.length - 1]!.seq;
    }
    return out;
  }

  private async page(after: number, since: Date | undefined, limit: number): Promise<AuditEntry[]> {
    let q = this.db.selectFrom('audit').selectAll().where('seq', '>', after);
    if (since) q = q.where('at', '>=', since.getTime());
    const rows = await q.orderBy('seq').limit(limit).execute();
    return rows.map(entryOf);
  }

  async addCheckpoint(c: Checkpoint): Promise<void> {
    await this.db
      .insertInto('audit_checkpoints')
      .values({
        seq: c.seq,
        hash: c.hash,
        component: c.component,
        at: new Date(c.at).getTime(),
        signature: c.signature,
        certificate: c.certificate,
      })
      .execute();
  }

  /** Checkpoints after sequence number `after`, oldest first, at most `limit`. */
  async checkpoints(after: number, limit: number): Promise<Checkpoint[]> {
    const rows = await this.db
      .selectFrom('audit_checkpoints')
      .selectAll()
      .where('seq', '>', after)
      .orderBy('seq')
      .orderBy('at')
      .limit(limit)
      .execute();
    return rows.map(checkpointOf);
  }

  /** The newest checkpoint, if any. */
  async latestCheckpoint(): Promise<Checkpoint | undefined> {
    const row = await this.db
      .selectFrom('audit_checkpoints')
      .selectAll()
      .orderBy('seq', 'desc')
      .orderBy('at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? checkpointOf(row) : undefined;
  }
}
