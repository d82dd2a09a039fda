/**
 * Fresh, empty stores for tests on both backends, for `describe.each`: a SQLite file, or a
 * database on the test run's PostgreSQL server (test/support/global-setup.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, inject } from 'vitest';
import type { Backend } from '../../src/store/database.js';
import { createTestDatabase } from './postgres.js';

/** `[backend, makeUrl]` for each backend; files and databases are this test file's own. */
export function storeBackends(name: string) {
  const dir = mkdtempSync(join(tmpdir(), `pollen-${name}-`));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return [
    ['sqlite', async () => join(dir, `${randomUUID()}.db`)],
    [
      'postgres',
      async () => createTestDatabase(inject('postgresUrl'), `t_${randomUUID().replaceAll('-', '')}`),
    ],
  ] as const satisfies readonly (readonly [Backend, () => Promise<string>])[];
}
