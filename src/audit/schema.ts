/**
 * The audit tables both services keep in their store (SQLite or PostgreSQL): the hash-chained
 * entries and the signed checkpoints that anchor the chain's head.
 */
import type { Kysely, Migration } from 'kysely';

export interface AuditSchema {
  /** Append-only, hash-chained (entry.ts). `subject` holds the entry's target. */
  audit: {
    seq: number;
    at: number;
    actor: string;
    action: string;
    subject: string;
    detail: string;
    prev_hash: string;
    hash: string;
    actor_name: string | null;
    actor_org: string | null;
    auth: string | null;
    address: string | null;
    outcome: string | null;
    federation: string | null;
  };
  audit_checkpoints: {
    seq: number;
    hash: string;
    component: string;
    at: number;
    signature: string;
    certificate: string;
  };
}

const WHO_COLUMNS = ['actor_name', 'actor_org', 'auth', 'address', 'outcome', 'federation'] as const;

async function createCheckpoints(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_checkpoints')
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('component', 'text', (c) => c.notNull())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .addColumn('certificate', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('audit_checkpoints_seq').on('audit_checkpoints').column('seq').execute();
}

/** For a store that already has the original `audit` table: who, where, outcome; checkpoints. */
export const auditUpgradeMigration: Migration = {
  async up(db: Kysely<unknown>) {
    for (const column of WHO_COLUMNS) await db.schema.alterTable('audit').addColumn(column, 'text').execute();
    await createCheckpoints(db);
  },
};

/** For a store without one: the whole audit trail. */
export const auditMigration: Migration = {
  async up(db: Kysely<unknown>) {
    let table = db.schema
      .createTable('audit')
      .addColumn('seq', 'bigint', (c) => c.primaryKey())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('actor', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('detail', 'text', (c) => c.notNull())
      .addColumn('prev_hash', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull());
    for (const column of WHO_COLUMNS) table = table.addColumn(column, 'text');
    await table.execute();
    await createCheckpoints(db);
  },
};
