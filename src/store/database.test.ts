import { type Kysely, sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { openDatabase } from './database.js';

interface Schema {
  item: { id: string; value: number };
}
const migrations = {
  '001_item': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('item')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('value', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
};

describe.each(storeBackends('store'))('store on %s', (backend, makeUrl) => {
  it('migrates, writes, reads back bigints as numbers and survives a reopen', async () => {
    const url = await makeUrl();
    const a = await openDatabase<Schema>({ url, migrations });
    expect(a.backend).toBe(backend);
    await a.db.insertInto('item').values({ id: 'x', value: 1_700_000_000_123 }).execute();
    await a.close();
    const b = await openDatabase<Schema>({ url, migrations });
    const row = await b.db.selectFrom('item').selectAll().where('id', '=', 'x').executeTakeFirstOrThrow();
    expect(row.value).toBe(1_700_000_000_123);
    await b.close();
  });

  it('rolls back a failed transaction completely', async () => {
    const s = await openDatabase<Schema>({ url: await makeUrl(), migrations });
    await expect(
      s.db.transaction().execute(async (tx) => {
        await tx.insertInto('item').values({ id: 'y', value: 1 }).execute();
        await tx.insertInto('item').values({ id: 'y', value: 2 }).execute();
      }),
    ).rejects.toThrow();
    const n = await s.db.selectFrom('item').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
    expect(Number(n.n)).toBe(0);
    await s.close();
  });
});

describe('store errors', () => {
  it('reports an unreachable PostgreSQL server as DATABASE_UNAVAILABLE without the password', async () => {
    const err = await openDatabase({ url: 'postgres://u:secret@127.0.0.1:1/x', migrations }).catch((e) => e);
    expect(err.code).toBe('DATABASE_UNAVAILABLE');
    expect(err.message).not.toContain('secret');
  });
  it('refuses an empty SQLite path', async () => {
    await expect(openDatabase({ url: 'sqlite:', migrations })).rejects.toMatchObject({
      code: 'DATABASE_URL_INVALID',
    });
  });
});

describe.each(storeBackends('store-newer'))('a store a newer Pollen upgraded, on %s', (_backend, makeUrl) => {
  it('is refused with STORE_NEWER_VERSION, naming the migrations this code lacks', async () => {
    const url = await makeUrl();
    const newer = {
      ...migrations,
      '002_more': {
        async up(db: Kysely<unknown>) {
          await db.schema.alterTable('item').addColumn('extra', 'text').execute();
        },
      },
    };
    await (await openDatabase({ url, migrations: newer })).close();
    const err = await openDatabase({ url, migrations }).catch((e) => e);
    expect(err).toMatchObject({ code: 'STORE_NEWER_VERSION', exitCode: 6 });
    expect(err.message).toMatch(/has migrations this Pollen does not know \(002_more\)/);
    expect(err.data).toEqual({ unknownMigrations: ['002_more'], latestKnown: '001_item' });
    expect(err.hint).toMatch(/restore the backup taken before the upgrade/);
    // The code that upgraded it still opens it.
    await (await openDatabase({ url, migrations: newer })).close();
  });
});
