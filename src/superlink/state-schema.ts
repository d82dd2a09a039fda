import { type Kysely, type Migration, sql } from 'kysely';
import { type AuditSchema, auditMigration } from '../audit/schema.js';
import { type ServiceAccountRow, serviceAccountsMigration } from '../identity/service-accounts.js';
import type { Backend } from '../store/database.js';

/**
 * The SuperLink's tables. Times are epoch milliseconds (BIGINT). Booleans are INTEGER 0/1 so both
 * backends read back the same JavaScript value.
 */
export interface LinkSchema extends AuditSchema {
  /** The one SuperLink that owns this store (store-lease.ts); a single row, id 1. */
  store_lease: {
    id: number;
    holder: string;
    acquired_at: number;
    expires_at: number;
  };
  nodes: {
    node_id: string;
    name: string;
    cert_fingerprint: string | null;
    /** `TYPE BASE64` of the OpenSSH public key (comment dropped); unique. */
    public_key: string | null;
    /** 1 while an admin's key registration stands. */
    registered: number;
    heartbeat_interval_ms: number;
    online_until: number;
    last_seen_at: number | null;
    activated_at: number | null;
    deactivated_at: number | null;
    created_at: number;
    /**
     * The site (client certificate name; the node name when insecure) the registered key is bound
     * to; NULL until named at registration or bound by the key's first activation.
     */
    site: string | null;
    site_bound_at: number | null;
    /** `admin:NAME` when named at registration, `first-use` when bound by the first activation. */
    site_bound_by: string | null;
    /** The organisation of whoever registered the key (its `node.manage` target); NULL: none known. */
    org: string | null;
    /** The organisation (`O=`) of the client certificate of its last activation; NULL: none. */
    cert_org: string | null;
  };
  /**
   * Nonces of signed (ActivateNode) requests, kept until their timestamp leaves the window, so a
   * replay is refused after a restart and by every SuperLink sharing the store.
   */
  node_nonces: {
    nonce: string;
    node_id: string;
    /** Request timestamp + window: after this no SuperLink accepts the request anyway. */
    expires_at: number;
  };
  runs: {
    run_id: string;
    status: 'pending' | 'starting' | 'running' | 'finished';
    sub_status: '' | 'completed' | 'failed' | 'stopped';
    reason: string;
    fab_hash: string;
    fab_name: string;
    fab_version: string;
    /** JSON object. */
    run_config: string;
    federation: string;
    /** Shown to people: an e-mail, a certificate name, `sa:NAME`. */
    created_by: string;
    /** The creator's `Identity.subject` (for `own` rights); NULL for runs from before 0007. */
    created_by_subject: string | null;
    /** The creator's organisation; NULL where none was known. */
    org: string | null;
    created_at: number;
    pending_at: number | null;
    starting_at: number | null;
    running_at: number | null;
    finished_at: number | null;
    /** SHA-256 (hex) of the ServerApp's token; the token itself is never stored. */
    serverapp_token_sha256: string | null;
  };
  messages: {
    message_id: string;
    run_id: string;
    kind: 'instruction' | 'reply';
    src_node_id: string;
    dst_node_id: string;
    /** NULL for instructions, so a unique index allows one reply per instruction. */
    reply_to: string | null;
    group_id: string;
    message_type: string;
    created_at: number;
    ttl_ms: number;
    expires_at: number;
    delivered_at: number | null;
    payload: Uint8Array;
    /** JSON array of the sha256 (hex) chunk ids the payload references. */
    chunk_ids: string;
    size_bytes: number;
  };
  run_logs: {
    run_id: string;
    seq: number;
    at: number;
    stream: 'stdout' | 'stderr' | 'system';
    text: string;
  };
  run_metrics: {
    run_id: string;
    round: number;
    at: number;
    /** JSON object of numbers. */
    metrics: string;
    /** JSON array of node ids. */
    node_ids: string;
    bytes_sent: number;
    bytes_received: number;
    /** Replies with content and failed messages of the round (counted by the ServerApp's grid). */
    replies: number;
    failures: number;
  };
  /** What a run's ServerApp saved; the bytes are in the artefact store (artefacts.ts). */
  run_artefacts: {
    run_id: string;
    name: string;
    /** `sha256:HEX` of the artefact's bytes. */
    hash: string;
    size: number;
    /** JSON array of its chunk ids (sha256 hex), in order. */
    chunk_ids: string;
    saved_at: number;
  };
  /** Pipelines' credentials for the Control API (identity/service-accounts.ts). */
  service_accounts: ServiceAccountRow;
  /** Federations besides the implicit `default` (federations.ts). */
  federations: {
    name: string;
    description: string;
    /** JSON array: nodes whose certificate names one of these organisations serve it. */
    node_orgs: string;
    created_by: string;
    created_at: number;
  };
  federation_members: {
    federation: string;
    /** `KIND:SUBJECT`, as WhoAmI names identities (`user:…`, `service_account:…`, `certificate:…`). */
    subject: string;
    name: string;
    email: string | null;
    org: string | null;
    role: string;
    added_by: string;
    added_at: number;
  };
  /** Nodes added to a federation one by one (by registration or AddFederationNode). */
  federation_nodes: {
    federation: string;
    node_id: string;
    added_by: string;
    added_at: number;
  };
  /** Invitations into a federation (invitations.ts); single use, bound to one identity. */
  federation_invitations: {
    id: string;
    federation: string;
    /** Exactly one of email and subject is set. */
    email: string | null;
    subject: string | null;
    role: string;
    /** SHA-256 (hex) of the code; the code itself is never stored. */
    code_sha256: string;
    created_by: string;
    created_at: number;
    expires_at: number;
    accepted_by: string | null;
    accepted_at: number | null;
    revoked_by: string | null;
    revoked_at: number | null;
  };
}

/** The migrations differ only in the binary column type (BLOB on SQLite, BYTEA on PostgreSQL). */
export function linkStateMigrations(backend: Backend): Record<string, Migration> {
  const binary = backend === 'postgres' ? sql`bytea` : sql`blob`;
  return {
    '0001_link_state': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('nodes')
          .addColumn('node_id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('cert_fingerprint', 'text')
          .addColumn('public_key', 'text', (c) => c.unique())
          .addColumn('registered', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('heartbeat_interval_ms', 'bigint', (c) => c.notNull())
          .addColumn('online_until', 'bigint', (c) => c.notNull())
          .addColumn('last_seen_at', 'bigint')
          .addColumn('activated_at', 'bigint')
          .addColumn('deactivated_at', 'bigint')
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('runs')
          .addColumn('run_id', 'text', (c) => c.primaryKey())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('sub_status', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addColumn('fab_hash', 'text', (c) => c.notNull())
          .addColumn('fab_name', 'text', (c) => c.notNull())
          .addColumn('fab_version', 'text', (c) => c.notNull())
          .addColumn('run_config', 'text', (c) => c.notNull())
          .addColumn('federation', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('pending_at', 'bigint')
          .addColumn('starting_at', 'bigint')
          .addColumn('running_at', 'bigint')
          .addColumn('finished_at', 'bigint')
          .addColumn('serverapp_token_sha256', 'text')
          .execute();
        await db.schema.createIndex('runs_created').on('runs').columns(['created_at']).execute();
        await db.schema.createIndex('runs_status').on('runs').columns(['status']).execute();
        await db.schema
          .createTable('messages')
          .addColumn('message_id', 'text', (c) => c.primaryKey())
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('src_node_id', 'text', (c) => c.notNull())
          .addColumn('dst_node_id', 'text', (c) => c.notNull())
          .addColumn('reply_to', 'text', (c) => c.unique())
          .addColumn('group_id', 'text', (c) => c.notNull())
          .addColumn('message_type', 'text', (c) => c.notNull())
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('ttl_ms', 'bigint', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .addColumn('delivered_at', 'bigint')
          .addColumn('payload', binary, (c) => c.notNull())
          .addColumn('chunk_ids', 'text', (c) => c.notNull())
          .addColumn('size_bytes', 'integer', (c) => c.notNull())
          .execute();
        // The pull path: a node's undelivered instructions.
        await db.schema
          .createIndex('messages_dst')
          .on('messages')
          .columns(['dst_node_id', 'kind', 'delivered_at'])
          .execute();
        await db.schema.createIndex('messages_run').on('messages').columns(['run_id', 'kind']).execute();
        await db.schema
          .createTable('run_logs')
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('seq', 'bigint', (c) => c.notNull())
          .addColumn('at', 'bigint', (c) => c.notNull())
          .addColumn('stream', 'text', (c) => c.notNull())
          .addColumn('text', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('run_logs_pk', ['run_id', 'seq'])
          .execute();
        await db.schema
          .createTable('run_metrics')
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('round', 'integer', (c) => c.notNull())
          .addColumn('at', 'bigint', (c) => c.notNull())
          .addColumn('metrics', 'text', (c) => c.notNull())
          .addColumn('node_ids', 'text', (c) => c.notNull())
          .addColumn('bytes_sent', 'bigint', (c) => c.notNull())
          .addColumn('bytes_received', 'bigint', (c) => c.notNull())
          .addPrimaryKeyConstraint('run_metrics_pk', ['run_id', 'round'])
          .execute();
      },
    },
    '0002_node_nonces': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('node_nonces')
          .addColumn('nonce', 'text', (c) => c.primaryKey())
          .addColumn('node_id', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('node_nonces_expires')
          .on('node_nonces')
          .columns(['expires_at'])
          .execute();
      },
    },
    '0003_node_sites': {
      async up(db: Kysely<unknown>) {
        // Keys registered before this migration are unbound: their next activation binds them.
        // (SQLite adds one column per ALTER TABLE.)
        await db.schema.alterTable('nodes').addColumn('site', 'text').execute();
        await db.schema.alterTable('nodes').addColumn('site_bound_at', 'bigint').execute();
        await db.schema.alterTable('nodes').addColumn('site_bound_by', 'text').execute();
      },
    },
    '0004_round_replies': {
      async up(db: Kysely<unknown>) {
        // Rounds reported before this migration count as having no failures.
        for (const column of ['replies', 'failures'])
          await db.schema
            .alterTable('run_metrics')
            .addColumn(column, 'integer', (c) => c.notNull().defaultTo(0))
            .execute();
      },
    },
    '0005_run_artefacts': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('run_artefacts')
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('hash', 'text', (c) => c.notNull())
          .addColumn('size', 'bigint', (c) => c.notNull())
          .addColumn('chunk_ids', 'text', (c) => c.notNull())
          .addColumn('saved_at', 'bigint', (c) => c.notNull())
          .addPrimaryKeyConstraint('run_artefacts_pk', ['run_id', 'name'])
          .execute();
      },
    },
    '0006_owners': {
      async up(db: Kysely<unknown>) {
        // Runs and keys from before this migration have no owner: only an `any` right reaches them.
        await db.schema.alterTable('runs').addColumn('created_by_subject', 'text').execute();
        await db.schema.alterTable('runs').addColumn('org', 'text').execute();
        await db.schema.alterTable('nodes').addColumn('org', 'text').execute();
      },
    },
    '0007_service_accounts': serviceAccountsMigration,
    '0008_federations': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('nodes').addColumn('cert_org', 'text').execute();
        // Until now a SuperLink had one federation: its runs were on it, whatever a client named.
        await sql`UPDATE runs SET federation = 'default'`.execute(db);
        await db.schema
          .createTable('federations')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('description', 'text', (c) => c.notNull())
          .addColumn('node_orgs', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('federation_members')
          .addColumn('federation', 'text', (c) => c.notNull())
          .addColumn('subject', 'text', (c) => c.notNull())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('email', 'text')
          .addColumn('org', 'text')
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('added_by', 'text', (c) => c.notNull())
          .addColumn('added_at', 'bigint', (c) => c.notNull())
          .addPrimaryKeyConstraint('federation_members_pk', ['federation', 'subject'])
          .execute();
        await db.schema
          .createTable('federation_nodes')
          .addColumn('federation', 'text', (c) => c.notNull())
          .addColumn('node_id', 'text', (c) => c.notNull())
          .addColumn('added_by', 'text', (c) => c.notNull())
          .addColumn('added_at', 'bigint', (c) => c.notNull())
          .addPrimaryKeyConstraint('federation_nodes_pk', ['federation', 'node_id'])
          .execute();
        await db.schema
          .createTable('federation_invitations')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('federation', 'text', (c) => c.notNull())
          .addColumn('email', 'text')
          .addColumn('subject', 'text')
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('code_sha256', 'text', (c) => c.notNull().unique())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .addColumn('accepted_by', 'text')
          .addColumn('accepted_at', 'bigint')
          .addColumn('revoked_by', 'text')
          .addColumn('revoked_at', 'bigint')
          .execute();
        await db.schema
          .createIndex('federation_invitations_federation')
          .on('federation_invitations')
          .columns(['federation'])
          .execute();
      },
    },
    // The audit trail shared with the Certificate Service (audit/schema.ts).
    '0009_audit_trail': auditMigration,
    '0010_store_lease': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('store_lease')
          .addColumn('id', 'integer', (c) => c.primaryKey())
          .addColumn('holder', 'text', (c) => c.notNull())
          .addColumn('acquired_at', 'bigint', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .execute();
      },
    },
  };
}
