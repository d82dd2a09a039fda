import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CheckpointSigner } from '../src/audit/checkpoint.js';
import type { AuditRecord, ListedEntry } from '../src/audit/entry.js';
import { type AuditSchema, auditMigration } from '../src/audit/schema.js';
import { AuditTrail } from '../src/audit/trail.js';
import { verifyAuditTrail } from '../src/audit/verify.js';
import { enrollmentMigrations } from '../src/enrollment/service/schema.js';
import { PollenError } from '../src/errors.js';
import { type Database, openDatabase } from '../src/store/database.js';
import { storeBackends } from './support/backends.js';
import { tempDir } from './support/cli.js';
import { makePki, type Pki, tlsOf } from './support/federation.js';

const T0 = Date.now();

function rec(i: number, o: Partial<AuditRecord> = {}): AuditRecord {
  return {
    actor: {
      subject: `user-${i % 3}`,
      name: `u${i % 3}@example.org`,
      org: 'org-a',
      auth: 'user',
      address: '127.0.0.1',
    },
    action: 'Control/StartRun',
    target: `run-${i}`,
    at: new Date(T0 + i * 1000),
    outcome: 'ok',
    federation: i % 2 ? 'study' : null,
    detail: { i },
    ...o,
  };
}

/** The PollenError code `fn` throws (the test fails if it throws none). */
function codeOf(fn: () => unknown): { code: string; data: Record<string, unknown> | undefined } {
  try {
    fn();
  } catch (e) {
    if (e instanceof PollenError) return { code: e.code, data: e.data };
    throw e;
  }
  throw new Error('no error thrown');
}

let pki: Pki;
let signer: CheckpointSigner;
let root: string;
const dir = tempDir('audit-trail-');
afterAll(() => dir.cleanup());
beforeAll(async () => {
  pki = await makePki(join(dir.dir, 'pki'));
  const tls = tlsOf(pki.server);
  signer = { component: 'superlink', key: tls.key, certificate: tls.cert };
  root = tls.ca;
}, 30_000);

const open: Database<AuditSchema>[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

describe.each(storeBackends('audit-trail'))('the audit trail on %s', (_backend, makeUrl) => {
  let now = T0;
  /** A trail of 8 entries, checkpoints at entries 6 and 8. */
  async function trail() {
    const store = await openDatabase<AuditSchema>({
      url: await makeUrl(),
      migrations: { '0001': auditMigration },
    });
    open.push(store);
    const t = new AuditTrail({ store, signer, checkpointEveryMs: 0, now: () => new Date(now) });
    for (let i = 1; i <= 6; i++) await t.record(rec(i));
    await t.checkpoint();
    for (let i = 7; i <= 8; i++) await t.record(rec(i));
    await t.close();
    const db = store.db as Kysely<AuditSchema>;
    const read = async () => ({
      entries: (await t.log.list({}, 10_000)) as ListedEntry[],
      checkpoints: await t.log.checkpoints(0, 100),
    });
    return { t, db, read };
  }
  const verify = (r: { entries: ListedEntry[]; checkpoints: Parameters<typeof verifyAuditTrail>[1] }) =>
    verifyAuditTrail(r.entries, r.checkpoints, root);

  it('verifies a good log, anchored by the checkpoints signed at 6 and on close at 8', async () => {
    const { read } = await trail();
    const r = await read();
    expect(r.checkpoints.map((c) => c.seq)).toEqual([6, 8]);
    expect(verify(r)).toMatchObject({ entries: 8, anchoredAt: 8, head: { seq: 8 } });
  });

  it('finds an altered entry', async () => {
    const { db, read } = await trail();
    await db.updateTable('audit').set({ address: '10.9.9.9' }).where('seq', '=', 3).execute();
    const r = await read();
    expect(codeOf(() => verify(r))).toMatchObject({ code: 'AUDIT_CHAIN_BROKEN', data: { seq: 3 } });
  });

  it('finds a removed entry', async () => {
    const { db, read } = await trail();
    await db.deleteFrom('audit').where('seq', '=', 4).execute();
    const r = await read();
    expect(codeOf(() => verify(r))).toMatchObject({ code: 'AUDIT_CHAIN_BROKEN', data: { seq: 4 } });
  });

  it('finds two entries swapped', async () => {
    const { db, read } = await trail();
    await db.updateTable('audit').set({ seq: -3 }).where('seq', '=', 3).execute();
    await db.updateTable('audit').set({ seq: 3 }).where('seq', '=', 4).execute();
    await db.updateTable('audit').set({ seq: 4 }).where('seq', '=', -3).execute();
    const r = await read();
    expect(codeOf(() => verify(r))).toMatchObject({ code: 'AUDIT_CHAIN_BROKEN', data: { seq: 3 } });
  });

  it('finds a truncated tail', async () => {
    const { db, read } = await trail();
    await db.deleteFrom('audit').where('seq', '>', 6).execute();
    const r = await read();
    expect(codeOf(() => verify(r))).toMatchObject({ code: 'AUDIT_TRUNCATED', data: { seq: 8, head: 6 } });
  });

  it('finds a whole chain recomputed from a changed entry (a forged head)', async () => {
    const { db, read } = await trail();
    await db.updateTable('audit').set({ subject: 'run-forged' }).where('seq', '=', 2).execute();
    // The forger recomputes every hash after the change: the chain itself is consistent again.
    const { auditHash } = await import('../src/audit/entry.js');
    let prev = '0'.repeat(64);
    for (const e of (await read()).entries) {
      if ('redacted' in e) throw new Error('unexpected');
      const hash = auditHash(prev, e);
      await db.updateTable('audit').set({ prev_hash: prev, hash }).where('seq', '=', e.seq).execute();
      prev = hash;
    }
    const r = await read();
    expect(verifyAuditTrail(r.entries, [], root).entries).toBe(8);
    expect(codeOf(() => verify(r))).toMatchObject({ code: 'AUDIT_CHECKPOINT_MISMATCH', data: { seq: 6 } });
  });

  it('finds a checkpoint not signed by a server of the project', async () => {
    const { db, read } = await trail();
    await db
      .updateTable('audit_checkpoints')
      .set({ hash: 'f'.repeat(64) })
      .where('seq', '=', 8)
      .execute();
    const r = await read();
    expect(codeOf(() => verify(r))).toMatchObject({ code: 'AUDIT_CHECKPOINT_SIGNATURE', data: { seq: 8 } });
    // signed by a real key, but an admin's certificate, not a server's
    const admin = tlsOf(pki.admin);
    const { signCheckpoint } = await import('../src/audit/checkpoint.js');
    const byAdmin = signCheckpoint(
      { component: 'superlink', key: admin.key, certificate: admin.cert },
      r.entries[7]!,
      new Date(now),
    );
    expect(codeOf(() => verifyAuditTrail(r.entries.slice(0, 8), [byAdmin], root))).toMatchObject({
      code: 'AUDIT_CHECKPOINT_SIGNATURE',
    });
  });

  it('finds a rollback of the whole store with a checkpoint saved elsewhere', async () => {
    const { db, read } = await trail();
    const saved = (await read()).checkpoints.at(-1)!;
    await db.deleteFrom('audit').where('seq', '>', 6).execute();
    await db.deleteFrom('audit_checkpoints').where('seq', '>', 6).execute();
    const r = await read();
    expect(verify(r).entries).toBe(6); // consistent on its own
    expect(codeOf(() => verifyAuditTrail(r.entries, [...r.checkpoints, saved], root))).toMatchObject({
      code: 'AUDIT_TRUNCATED',
    });
  });

  it('lets an organisation check the whole chain through the entries it may not read', async () => {
    const { t } = await trail();
    await t.record(rec(9, { actor: { subject: 'bob', org: 'org-b', auth: 'certificate', address: null } }));
    const entries = await t.log.list({ visible: (e) => e.actorOrg === 'org-b', hidden: 'redact' }, 100);
    expect(entries.filter((e) => !('redacted' in e))).toHaveLength(1);
    expect(JSON.stringify(entries)).not.toContain('u1@example.org');
    expect(verifyAuditTrail(entries, [], root)).toMatchObject({ entries: 9, redacted: 8, unchecked: 0 });
  });

  it('writes a bounded number of entries for 10,000 refused calls', async () => {
    const store = await openDatabase<AuditSchema>({
      url: await makeUrl(),
      migrations: { '0001': auditMigration },
    });
    open.push(store);
    const t = new AuditTrail({
      store,
      checkpointEveryMs: 0,
      now: () => new Date(now),
      refusals: { windowMs: 60_000, maxKeys: 50 },
    });
    const refused = (i: number, subject: string) =>
      rec(i, {
        outcome: 'refused RIGHT_MISSING',
        actor: { subject, org: null, auth: 'user', address: '10.0.0.1' },
      });
    // one actor, one code, one method: the first written, the rest counted
    for (let i = 0; i < 10_000; i++) void t.refused(refused(i, 'mallory'));
    await t.settled();
    expect(await t.log.list({}, 100)).toHaveLength(1);
    now += 61_000;
    await t.tick();
    const one = await t.log.list({}, 100);
    expect(one).toHaveLength(2);
    expect(one[1]).toMatchObject({
      actor: 'mallory',
      outcome: 'refused RIGHT_MISSING',
      detail: { repeated: 9_999 },
    });
    // 10,000 different actors: at most maxKeys entries, the rest in one overflow count
    for (let i = 0; i < 10_000; i++) void t.refused(refused(i, `bot-${i}`));
    await t.settled();
    await t.close();
    const all = await t.log.list({}, 10_000);
    expect(all.length).toBeLessThanOrEqual(2 + 50 + 2);
    const overflow = all.filter((e) => !('redacted' in e) && e.actor === '*');
    expect(overflow.reduce((n, e) => n + Number(('detail' in e && e.detail.count) || 0), 0)).toBe(
      10_000 - 50,
    );
    expect(verifyAuditTrail(all, [], root).entries).toBe(all.length);
  });
});

describe('the Certificate Service log written before who and where were recorded', () => {
  it('still verifies after the upgrade, with new entries chained after it', async () => {
    const url = join(dir.dir, 'legacy.db');
    // The store as it was before the audit upgrade: only the migrations that came before it.
    const before = Object.fromEntries(
      Object.entries(enrollmentMigrations).filter(([name]) => name < '0004_audit_trail'),
    );
    const old = await openDatabase<{
      audit: Omit<
        AuditSchema['audit'],
        'actor_name' | 'actor_org' | 'auth' | 'address' | 'outcome' | 'federation'
      >;
    }>({ url, migrations: before });
    const at = new Date(T0);
    const fields = [
      1,
      at.toISOString(),
      'api-key:abcd',
      'request.approved',
      'site-a',
      { requestId: 'r1', org: 'org-a' },
    ];
    const hash = createHash('sha256')
      .update(`${'0'.repeat(64)}\n${JSON.stringify(fields)}`)
      .digest('hex');
    await old.db
      .insertInto('audit')
      .values({
        seq: 1,
        at: T0,
        actor: 'api-key:abcd',
        action: 'request.approved',
        subject: 'site-a',
        detail: JSON.stringify(fields[5]),
        prev_hash: '0'.repeat(64),
        hash,
      })
      .execute();
    await old.close();
    const store = await openDatabase<AuditSchema>({ url, migrations: enrollmentMigrations });
    open.push(store);
    const t = new AuditTrail({
      store,
      signer: { ...signer, component: 'cert-service' },
      checkpointEveryMs: 0,
    });
    await t.record(rec(2));
    await t.close();
    const entries = await t.log.list({}, 100);
    expect(entries[0]).toMatchObject({ seq: 1, actor: 'api-key:abcd', outcome: null, target: 'site-a' });
    expect(verifyAuditTrail(entries, await t.log.checkpoints(0, 10), root)).toMatchObject({
      entries: 2,
      anchoredAt: 2,
    });
    // redacted for another organisation, the legacy entry is taken on trust, the new one checked
    const other = await t.log.list({ visible: () => false, hidden: 'redact' }, 100);
    expect(verifyAuditTrail(other, [], root)).toMatchObject({ redacted: 2, unchecked: 1 });
  });
});
