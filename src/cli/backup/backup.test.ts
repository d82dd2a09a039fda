import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { pollenInProcess, tempDir } from '../../../test/support/cli.js';
import { createTestDatabase } from '../../../test/support/postgres.js';

const PASS = 'a backup passphrase of some length';
const env = { POLLEN_BACKUP_PASSPHRASE: PASS };
const KEY = '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----\n';

describe('pollen backup and restore (in-process)', () => {
  const tmp = tempDir('pollen-backup-');
  // A SuperLink-like state dir whose store is open and being written (WAL, not checkpointed).
  const state = join(tmp.dir, 'superlink');
  mkdirSync(join(state, 'tls'), { recursive: true });
  writeFileSync(join(state, 'tls', 'server.key'), KEY, { mode: 0o600 });
  writeFileSync(join(state, 'superlink.log'), 'a log line\n');
  const live = new Sqlite(join(state, 'superlink.db'));
  live.pragma('journal_mode = WAL');
  live.pragma('wal_autocheckpoint = 0');
  live.exec('CREATE TABLE runs (id TEXT PRIMARY KEY, status TEXT)');
  const insert = live.prepare('INSERT INTO runs VALUES (?, ?)');
  for (let i = 0; i < 50; i++) insert.run(`run-${i}`, 'finished');
  // The running SuperLink's lease on its store: the process's, not the data's.
  live.exec(
    "CREATE TABLE store_lease (id INTEGER PRIMARY KEY, holder TEXT); INSERT INTO store_lease VALUES (1, 'host:42:x')",
  );
  const archive = join(tmp.dir, 'superlink.pollen-backup');
  afterAll(() => {
    live.close();
    tmp.cleanup();
  });

  it('backs up a store while it is open for writing, and restores every row and file', async () => {
    const made = await pollenInProcess(['backup', state, '-o', archive, '--json'], { env });
    expect(made.code, made.stderr).toBe(0);
    expect(made.json()).toMatchObject({
      component: 'superlink',
      database: 'sqlite',
      privateKeys: true,
      encrypted: true,
    });
    expect(statSync(archive).mode & 0o777).toBe(0o600);
    expect(readFileSync(archive).includes('PRIVATE KEY')).toBe(false);
    insert.run('run-after', 'running'); // after the snapshot: not in it

    const target = join(tmp.dir, 'restored');
    const back = await pollenInProcess(
      ['restore', archive, '-w', target, '--component', 'superlink', '--json'],
      { env },
    );
    expect(back.code, back.stderr).toBe(0);
    expect(back.json()).toMatchObject({ component: 'superlink', dir: target });
    const db = new Sqlite(join(target, 'superlink.db'), { readonly: true });
    expect(db.prepare('SELECT count(*) AS n FROM runs').get()).toEqual({ n: 50 });
    // The copy is held by no one, so it starts while the original still runs.
    expect(db.prepare('SELECT count(*) AS n FROM store_lease').get()).toEqual({ n: 0 });
    db.close();
    expect(live.prepare('SELECT count(*) AS n FROM store_lease').get()).toEqual({ n: 1 });
    expect(readFileSync(join(target, 'superlink.log'), 'utf8')).toBe('a log line\n');
    expect(statSync(join(target, 'tls', 'server.key')).mode & 0o777).toBe(0o600);
  });

  it('refuses to write an archive without a passphrase, with a hint', async () => {
    const r = await pollenInProcess(['backup', state, '-o', join(tmp.dir, 'none'), '--json'], {
      env: { POLLEN_BACKUP_PASSPHRASE: '' },
    });
    expect(r.code).toBe(2);
    expect(r.json()).toMatchObject({
      error: { code: 'BACKUP_PASSPHRASE_REQUIRED', hint: expect.stringContaining('--passphrase-file') },
    });
  });

  it('refuses a folder that holds no component', async () => {
    const r = await pollenInProcess(['backup', tmp.dir, '-o', join(tmp.dir, 'x'), '--json'], { env });
    expect(r.json()).toMatchObject({ error: { code: 'BACKUP_UNKNOWN_COMPONENT' } });
  });

  it('refuses a wrong passphrase, another component, a non-empty target and a changed byte', async () => {
    const target = join(tmp.dir, 'again');
    const wrong = await pollenInProcess(['restore', archive, '-w', target, '--json'], {
      env: { POLLEN_BACKUP_PASSPHRASE: 'not the passphrase at all' },
    });
    expect(wrong.json()).toMatchObject({ error: { code: 'BACKUP_WRONG_PASSPHRASE' } });
    expect(wrong.code).toBe(5);

    const other = await pollenInProcess(
      ['restore', archive, '-w', target, '--component', 'cert-service', '--json'],
      { env },
    );
    expect(other.json()).toMatchObject({ error: { code: 'BACKUP_COMPONENT_MISMATCH' } });

    const full = join(tmp.dir, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'keep'), 'x');
    const occupied = await pollenInProcess(['restore', archive, '-w', full, '--json'], { env });
    expect(occupied.json()).toMatchObject({ error: { code: 'RESTORE_TARGET_NOT_EMPTY' } });

    const bytes = readFileSync(archive);
    bytes[bytes.length - 100]! ^= 0x80;
    const changed = join(tmp.dir, 'changed.pollen-backup');
    writeFileSync(changed, bytes);
    const tampered = await pollenInProcess(['restore', changed, '-w', target, '--json'], { env });
    expect(tampered.json()).toMatchObject({ error: { code: 'BACKUP_TAMPERED' } });
    expect(tampered.code).toBe(3);
    // Nothing was written by any refusal.
    expect(() => statSync(target)).toThrow();
  });
  it('dumps a PostgreSQL store with pg_dump and restores it into an empty database', async () => {
    const pg = (await import('pg')).default;
    const query = async (url: string, sql: string) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        return (await client.query(sql)).rows;
      } finally {
        await client.end();
      }
    };
    const name = () => `b_${randomUUID().replaceAll('-', '')}`;
    const source = await createTestDatabase(inject('postgresUrl'), name());
    await query(
      source,
      "CREATE TABLE runs (id text PRIMARY KEY); INSERT INTO runs VALUES ('r1'), ('r2'), ('r3');" +
        " CREATE TABLE store_lease (id integer PRIMARY KEY, holder text); INSERT INTO store_lease VALUES (1, 'host:42:x')",
    );
    const dir = join(tmp.dir, 'pg-superlink');
    mkdirSync(dir);
    writeFileSync(join(dir, 'superlink.log'), 'started\n');
    const file = join(tmp.dir, 'pg.pollen-backup');
    const made = await pollenInProcess(
      ['backup', dir, '--component', 'superlink', '--database', source, '-o', file, '--json'],
      { env },
    );
    expect(made.code, made.stdout).toBe(0);
    expect(made.json()).toMatchObject({ component: 'superlink', database: 'postgres' });

    const without = await pollenInProcess(['restore', file, '-w', join(tmp.dir, 'pg-a'), '--json'], { env });
    expect(without.json()).toMatchObject({
      error: { code: 'USAGE', message: expect.stringContaining('--database') },
    });
    const target = await createTestDatabase(inject('postgresUrl'), name());
    const back = await pollenInProcess(
      ['restore', file, '-w', join(tmp.dir, 'pg-b'), '--database', target, '--json'],
      { env },
    );
    expect(back.code, back.stdout).toBe(0);
    expect(await query(target, 'SELECT id FROM runs ORDER BY id')).toEqual([
      { id: 'r1' },
      { id: 'r2' },
      { id: 'r3' },
    ]);
    expect(await query(target, 'SELECT count(*)::int AS n FROM store_lease')).toEqual([{ n: 0 }]);
    expect(readFileSync(join(tmp.dir, 'pg-b', 'superlink.log'), 'utf8')).toBe('started\n');
  });
});
