import type { Kysely } from 'kysely';
import { describe, expect, it } from 'vitest';
import { WriteBatcher } from './batcher.js';
import { openDatabase } from './database.js';

interface S {
  t: { id: string };
}
const migrations = {
  '1': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('t')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .execute();
    },
  },
};

describe('WriteBatcher', () => {
  it('runs concurrent writes in shared transactions, isolating each failure to its own job', async () => {
    const store = await openDatabase<S>({ url: ':memory:', migrations });
    const b = new WriteBatcher(store.db);
    const ids = ['a', 'b', 'a', 'c', 'b', 'd'];
    const results = await Promise.allSettled(
      ids.map((id) =>
        b.run(async (tx) => {
          await tx.insertInto('t').values({ id }).execute();
          return id;
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    const rows = await store.db.selectFrom('t').select('id').orderBy('id').execute();
    expect(rows.map((r) => r.id)).toEqual(['a', 'b', 'c', 'd']);
    await store.close();
  });

  it('rolls back a lone failing job completely', async () => {
    const store = await openDatabase<S>({ url: ':memory:', migrations });
    const b = new WriteBatcher(store.db);
    await expect(
      b.run(async (tx) => {
        await tx.insertInto('t').values({ id: 'x' }).execute();
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await store.db.selectFrom('t').selectAll().execute()).toEqual([]);
    await store.close();
  });
});
