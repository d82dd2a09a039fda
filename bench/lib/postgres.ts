import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './proc.js';

/**
 * A throw-away PostgreSQL server for benches, from the machine's initdb/pg_ctl (as the
 * `postgres` user when we are root). Unlike the test helper it keeps PostgreSQL's durable
 * defaults (fsync=on, synchronous_commit=on), so its figures compare fairly with SQLite at
 * synchronous=FULL.
 */
export interface BenchPostgres {
  url: string;
  /** `SHOW fsync` / `SHOW synchronous_commit` as the server reports them. */
  settings: Record<string, string>;
  stop(): void;
}

function asPostgres(cmd: string, args: string[]): void {
  const root = process.getuid?.() === 0;
  const [bin, argv] = root ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  const r = spawnSync(bin, argv, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout || r.error?.message}`);
}

/** Whether initdb and pg_ctl are on the PATH. */
export function havePostgres(): boolean {
  return ['initdb', 'pg_ctl'].every((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
}

export async function startBenchPostgres(): Promise<BenchPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'pollen-bench-pg-'));
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const port = await freePort();
  asPostgres('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8']);
  asPostgres('pg_ctl', [
    '-D',
    data,
    '-l',
    join(dir, 'log'),
    '-w',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=100`,
    'start',
  ]);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const stop = () => {
    try {
      asPostgres('pg_ctl', ['-D', data, '-m', 'fast', 'stop']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const settings: Record<string, string> = {};
  try {
    const pg = (await import('pg')).default;
    const client = new pg.Client({ connectionString: url });
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
    stop();
    throw e;
  }
  return { url, settings, stop };
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
