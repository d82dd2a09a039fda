import { spawnSync } from 'node:child_process';
import { startPostgres } from '../../test/support/postgres.js';

/**
 * A throw-away PostgreSQL server for benches (the test helper's, started durable: fsync and
 * synchronous_commit on), so its figures compare fairly with SQLite at synchronous=FULL.
 */
export interface BenchPostgres {
  url: string;
  /** `SHOW fsync` / `SHOW synchronous_commit` as the server reports them. */
  settings: Record<string, string>;
  stop(): void;
}

/** Whether initdb and pg_ctl are on the PATH. */
export function havePostgres(): boolean {
  return ['initdb', 'pg_ctl'].every((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
}

export async function startBenchPostgres(): Promise<BenchPostgres> {
  const server = await startPostgres({ durable: true });
  const settings: Record<string, string> = {};
  try {
    const pg = (await import('pg')).default;
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      for (const name of ['fsync', 'synchronous_commit', 'wal_sync_method', 'server_version']) {
        const r = await client.query<Record<string, string>>(`SHOW ${name}`);
        settings[name] = Object.values(r.rows[0] ?? {})[0] ?? '';
      }
    } finally {
      await client.end();
    }
  } catch (e) {
    server.stop();
    throw e;
  }
  return { url: server.url, settings, stop: () => server.stop() };
}

/** Run one query that returns a single number (e.g. a row count). */
export async function queryNumber(url: string, text: string): Promise<number> {
  const pg = (await import('pg')).default;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query<Record<string, unknown>>(text);
    return Number(Object.values(r.rows[0] ?? {})[0]);
  } finally {
    await client.end();
  }
}
