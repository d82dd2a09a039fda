import { accessSync, constants, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import SQLite from 'better-sqlite3';
import {
  CompiledQuery,
  type DatabaseConnection,
  DEFAULT_MIGRATION_TABLE,
  type Driver,
  Kysely,
  type Migration,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  sql,
} from 'kysely';
import pg from 'pg';
import { accessDenied, PollenError, toPollenError } from '../errors.js';

export type Backend = 'sqlite' | 'postgres';

export interface Database<Schema> {
  readonly db: Kysely<Schema>;
  readonly backend: Backend;
  /** Where the data lives, with any password removed (for logs and --json). */
  readonly location: string;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** A path, `sqlite:PATH`, `:memory:` or `postgres://user@host:port/db`. */
  url: string;
  /** In-code migrations, applied in name order on open. */
  migrations: Record<string, Migration>;
  /** Largest PostgreSQL pool; SQLite uses one connection. */
  poolSize?: number;
}

// PostgreSQL returns BIGINT (int8) as strings; all our bigints are epoch milliseconds.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

/** Open a store and bring its schema up to date. Both backends run the same Kysely queries. */
export async function openDatabase<Schema>(options: OpenOptions): Promise<Database<Schema>> {
  const { url } = options;
  let db: Kysely<Schema>;
  let backend: Backend;
  let location: string;
  if (/^postgres(ql)?:\/\//.test(url)) {
    backend = 'postgres';
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new PollenError('DATABASE_URL_INVALID', 'The PostgreSQL URL cannot be parsed');
    }
    parsed.password = parsed.password ? '***' : '';
    location = parsed.toString();
    const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10 });
    db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  } else {
    backend = 'sqlite';
    const file = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
    if (!file) throw new PollenError('DATABASE_URL_INVALID', 'The SQLite path is empty');
    location = file === ':memory:' ? file : resolve(file);
    const sqlite = openSqlite(location);
    cachePreparedStatements(sqlite);
    db = new Kysely<Schema>({ dialect: new ImmediateSqliteDialect({ database: sqlite }) });
  }
  try {
    const migrator = new Migrator({
      db,
      provider: { getMigrations: async () => options.migrations },
    });
    const { error } = await migrator.migrateToLatest();
    if (error) throw (await newerStoreError(db, options.migrations, location)) ?? error;
  } catch (e) {
    await db.destroy();
    if (e instanceof PollenError) throw e;
    throw new PollenError('DATABASE_UNAVAILABLE', `Cannot open the ${backend} store at ${location}`, {
      cause: e,
      detail: e instanceof Error ? e.message : String(e),
    });
  }
  return { db, backend, location, close: () => db.destroy() };
}

/**
 * Opens (and creates) a SQLite file. A folder this process may not write is the usual mistake of a
 * deployment (a volume owned by root): it is refused as FILE_ACCESS_DENIED naming the folder and
 * the uid, not as an internal error.
 */
function openSqlite(location: string): SQLite.Database {
  const folder = dirname(location);
  try {
    if (location !== ':memory:') mkdirSync(folder, { recursive: true, mode: 0o700 });
    const sqlite = new SQLite(location);
    // WAL lets readers run beside the writer; FULL makes every commit durable, and busy_timeout
    // lets a second process (the CLI) wait for the lock instead of failing.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    return sqlite;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'SQLITE_CANTOPEN' || code === 'SQLITE_READONLY')
      for (const [path, mode] of [
        [folder, constants.W_OK | constants.X_OK],
        [location, constants.R_OK | constants.W_OK],
      ] as const)
        try {
          accessSync(path, mode);
        } catch (denied) {
          if ((denied as NodeJS.ErrnoException).code !== 'ENOENT')
            throw accessDenied(denied as NodeJS.ErrnoException, path);
        }
    throw toPollenError(e);
  }
}

/**
 * The refusal of a store that a newer Pollen migrated (a downgrade): its migration table names
 * migrations this code does not have, so its schema may hold what this code cannot read. Null when
 * that is not why the migration failed.
 */
async function newerStoreError<Schema>(
  db: Kysely<Schema>,
  known: Record<string, Migration>,
  location: string,
): Promise<PollenError | null> {
  let applied: string[];
  try {
    const { rows } = await sql<{
      name: string;
    }>`select name from ${sql.table(DEFAULT_MIGRATION_TABLE)}`.execute(db);
    applied = rows.map((r) => r.name);
  } catch {
    return null; // no migration table: another failure
  }
  const unknown = applied.filter((name) => !(name in known)).sort();
  if (unknown.length === 0) return null;
  const latest = Object.keys(known).sort().at(-1) ?? 'none';
  return new PollenError(
    'STORE_NEWER_VERSION',
    `The store at ${location} was upgraded by a newer Pollen: it has migrations this Pollen does not know (${unknown.join(', ')})`,
    { data: { unknownMigrations: unknown, latestKnown: latest } },
  );
}

/**
 * Transactions take SQLite's write lock when they begin (BEGIN IMMEDIATE), so several processes
 * sharing one database file (`cert-service --workers N`) wait for each other (busy_timeout)
 * instead of failing when a reader upgrades to a writer.
 */
class ImmediateSqliteDialect extends SqliteDialect {
  override createDriver(): Driver {
    const driver = super.createDriver();
    driver.beginTransaction = async (connection: DatabaseConnection) => {
      await connection.executeQuery(CompiledQuery.raw('begin immediate'));
    };
    return driver;
  }
}

/** Reuse prepared statements by SQL text (the hot paths run the same few statements). */
function cachePreparedStatements(sqlite: SQLite.Database, max = 256): void {
  const cache = new Map<string, SQLite.Statement>();
  const prepare = sqlite.prepare.bind(sqlite);
  sqlite.prepare = ((source: string) => {
    let stmt = cache.get(source);
    if (!stmt) {
      stmt = prepare(source);
      if (cache.size >= max) cache.delete(cache.keys().next().value!);
      cache.set(source, stmt);
    }
    return stmt;
  }) as typeof sqlite.prepare;
}

/** A write refused by a primary key or unique constraint (SQLite or PostgreSQL). */
export function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return (
    code === '23505' || (typeof code === 'string' && /^SQLITE_CONSTRAINT_(PRIMARYKEY|UNIQUE)$/.test(code))
  );
}
