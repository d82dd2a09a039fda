import type { Kysely, Migration } from 'kysely';
import { type AuditSchema, auditUpgradeMigration } from '../../audit/schema.js';
import { type ServiceAccountRow, serviceAccountsMigration } from '../../identity/service-accounts.js';

/** The Certificate Service's tables. Times are epoch milliseconds (BIGINT). */
export interface EnrollmentSchema extends AuditSchema {
  policies: {
    sha256: string;
    project: string;
    version: string;
    text: string;
    source: string;
    created_at: number;
  };
  /** The single-use ledger: one row per token ever used, consumed in the issuing transaction. */
  token_uses: {
    jti: string;
    subject: string;
    uses: number;
    max_uses: number;
    expires_at: number;
    last_used_at: number;
  };
  requests: {
    id: string;
    name: string;
    type: string;
    role: string | null;
    org: string | null;
    source_ip: string | null;
    status: 'pending' | 'approved' | 'rejected';
    rule: string | null;
    reason: string | null;
    csr: string;
    jti: string;
    policy_sha256: string;
    created_at: number;
    decided_at: number | null;
    decided_by: string | null;
    serial: string | null;
    /** Servers and relays: the token's hosts as a JSON list, for the certificate an approval signs. */
    hosts: string | null;
  };
  certificates: {
    serial: string;
    name: string;
    type: string;
    role: string | null;
    /** The organisation the certificate names (`O=`); NULL: none (certificates before 0003). */
    org: string | null;
    fingerprint: string;
    not_before: number;
    not_after: number;
    issued_at: number;
    approved_by: string;
    request_id: string | null;
    jti: string | null;
    renewed_from: string | null;
    /** Set when the certificate was renewed: it cannot be renewed again. */
    superseded_by: string | null;
    pem: string;
    revoked_at: number | null;
    revoke_reason: string | null;
  };
  api_keys: { sha256: string; label: string; created_at: number };
  /** Pipelines' credentials for the admin API (identity/service-accounts.ts). */
  service_accounts: ServiceAccountRow;
}

export const enrollmentMigrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('policies')
        .addColumn('sha256', 'text', (c) => c.primaryKey())
        .addColumn('project', 'text', (c) => c.notNull())
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('text', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('token_uses')
        .addColumn('jti', 'text', (c) => c.primaryKey())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('uses', 'integer', (c) => c.notNull())
        .addColumn('max_uses', 'integer', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('last_used_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('requests')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('role', 'text')
        .addColumn('org', 'text')
        .addColumn('source_ip', 'text')
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('rule', 'text')
        .addColumn('reason', 'text')
        .addColumn('csr', 'text', (c) => c.notNull())
        .addColumn('jti', 'text', (c) => c.notNull())
        .addColumn('policy_sha256', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('decided_at', 'bigint')
        .addColumn('decided_by', 'text')
        .addColumn('serial', 'text')
        .execute();
      await db.schema
        .createIndex('requests_status_name')
        .on('requests')
        .columns(['status', 'name'])
        .execute();
      await db.schema
        .createTable('certificates')
        .addColumn('serial', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('role', 'text')
        .addColumn('fingerprint', 'text', (c) => c.notNull())
        .addColumn('not_before', 'bigint', (c) => c.notNull())
        .addColumn('not_after', 'bigint', (c) => c.notNull())
        .addColumn('issued_at', 'bigint', (c) => c.notNull())
        .addColumn('approved_by', 'text', (c) => c.notNull())
        .addColumn('request_id', 'text')
        .addColumn('jti', 'text')
        .addColumn('renewed_from', 'text')
        .addColumn('superseded_by', 'text')
        .addColumn('pem', 'text', (c) => c.notNull())
        .addColumn('revoked_at', 'bigint')
        .addColumn('revoke_reason', 'text')
        .execute();
      await db.schema.createIndex('certificates_name').on('certificates').columns(['name', 'type']).execute();
      await db.schema
        .createTable('audit')
        .addColumn('seq', 'bigint', (c) => c.primaryKey())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('detail', 'text', (c) => c.notNull())
        .addColumn('prev_hash', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('api_keys')
        .addColumn('sha256', 'text', (c) => c.primaryKey())
        .addColumn('label', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  '0002_request_hosts': {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('requests').addColumn('hosts', 'text').execute();
    },
  },
  '0003_certificate_org': {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('certificates').addColumn('org', 'text').execute();
    },
  },
  // The audit trail shared with the SuperLink: who, where, outcome; signed checkpoints.
  '0004_audit_trail': auditUpgradeMigration,
  '0005_service_accounts': serviceAccountsMigration,
};
