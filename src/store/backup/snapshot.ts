/**
 * What goes into a component's backup and how it comes back: every file of its folder (CA
 * material, configuration, logs), each SQLite store copied by SQLite's online backup (a consistent
 * snapshot while the component writes to it), or a `pg_dump` of its PostgreSQL store.
 */
import { execFile } from 'node:child_process';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import Sqlite from 'better-sqlite3';
import { PollenError } from '../../errors.js';
import type { ArchiveContents, ArchiveFile, Component } from './archive.js';

/** Where a PostgreSQL store's dump sits in an archive. */
export const PG_DUMP_PATH = 'database.pgdump';
/** The folders a component rebuilds on its own (a run's round chunks), left out of backups. */
const TRANSIENT = new Set(['run-chunks']);
const SQLITE_SIDECARS = ['-wal', '-shm', '-journal'];
const PRIVATE_KEY = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/;

/** The component a folder holds, by the store file or kit layout it has. */
export function detectComponent(dir: string): Component | undefined {
  if (existsSync(join(dir, 'superlink.db'))) return 'superlink';
  if (existsSync(join(dir, 'cert-service.db'))) return 'cert-service';
  if (existsSync(join(dir, 'startup'))) return 'kit';
  return undefined;
}

export interface SnapshotOptions {
  dir: string;
  /** What the folder holds, when it cannot tell (a PostgreSQL store leaves no file). */
  component?: Component;
  /** A CA folder kept outside `dir` (the Certificate Service's `-c`), archived as `ca/`. */
  ca?: string;
  /** A postgres:// URL: the store is dumped with pg_dump. */
  database?: string;
  now?: () => Date;
}

/** A consistent copy of a (possibly running) component's folder and store. */
export async function snapshotComponent(o: SnapshotOptions): Promise<ArchiveContents> {
  if (!existsSync(o.dir) || !lstatSync(o.dir).isDirectory())
    throw new PollenError('FILE_NOT_FOUND', `No such folder: ${o.dir}`);
  const component = o.component ?? detectComponent(o.dir);
  if (!component)
    throw new PollenError(
      'BACKUP_UNKNOWN_COMPONENT',
      `${o.dir} holds no SuperLink, Certificate Service or startup kit`,
    );
  const scratch = mkdtempSync(join(tmpdir(), 'pollen-backup-'));
  try {
    const files = await collect(o.dir, '', scratch);
    if (o.ca) files.push(...(await collect(o.ca, 'ca/', scratch)));
    const postgres = o.database !== undefined && /^postgres(ql)?:\/\//.test(o.database);
    if (postgres) files.push({ path: PG_DUMP_PATH, mode: 0o600, data: await pgDump(o.database as string) });
    const sqlite = files.some((f) => f.data.subarray(0, 16).toString('latin1') === 'SQLite format 3\0');
    return {
      component,
      createdAt: (o.now?.() ?? new Date()).toISOString(),
      database: postgres ? 'postgres' : sqlite ? 'sqlite' : 'none',
      privateKeys: files.some((f) => PRIVATE_KEY.test(f.data.subarray(0, 1 << 20).toString('latin1'))),
      files,
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Every regular file under `dir` (`prefix` before its path), SQLite stores by online backup. */
async function collect(dir: string, prefix: string, scratch: string): Promise<ArchiveFile[]> {
  const out: ArchiveFile[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const name of readdirSync(at).sort()) {
      const path = join(at, name);
      const stat = lstatSync(path);
      const rel = relative(dir, path).split(sep).join('/');
      if (stat.isDirectory()) {
        if (!(at === dir && TRANSIENT.has(name))) await walk(path);
        continue;
      }
      if (!stat.isFile()) continue;
      if (SQLITE_SIDECARS.some((s) => name.endsWith(s) && existsSync(path.slice(0, -s.length)))) continue;
      const data = isSqlite(path) ? await sqliteSnapshot(path, scratch) : readFileSync(path);
      out.push({ path: prefix + rel, mode: stat.mode & 0o777, data });
    }
  };
  await walk(dir);
  return out;
}

function isSqlite(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(16);
    return readSync(fd, head, 0, 16, 0) === 16 && head.toString('latin1') === 'SQLite format 3\0';
  } finally {
    closeSync(fd);
  }
}

/**
 * Tables whose rows belong to the running process, not to its data: the SuperLink's store lease
 * names the process that holds the store. A snapshot leaves them empty, so the restored store is
 * held by no one (the running original would otherwise keep its copy from starting).
 */
const PROCESS_TABLES = ['store_lease'];

/** SQLite's online backup: pages copied in steps, restarted when a writer changes them. */
async function sqliteSnapshot(path: string, scratch: string): Promise<Buffer> {
  const copy = join(scratch, `${Math.random().toString(36).slice(2)}.db`);
  const db = new Sqlite(path, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    await db.backup(copy);
  } finally {
    db.close();
  }
  const snapshot = new Sqlite(copy, { fileMustExist: true });
  try {
    const present = snapshot.prepare("select name from sqlite_master where type = 'table' and name = ?");
    for (const table of PROCESS_TABLES)
      if (present.get(table)) snapshot.prepare(`delete from "${table}"`).run();
  } finally {
    snapshot.close();
  }
  return readFileSync(copy);
}

/** pg_dump's custom format of the database at `url` (what pg_restore reads). */
function pgDump(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      'pg_dump',
      [
        '--format=custom',
        '--no-owner',
        ...PROCESS_TABLES.map((t) => `--exclude-table-data=${t}`),
        '--dbname',
        url,
      ],
      { encoding: 'buffer', maxBuffer: 1 << 30 },
      (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        reject(
          new PollenError('BACKUP_DATABASE_FAILED', 'pg_dump could not dump the database', {
            cause: error,
            detail: stderr.toString(),
          }),
        );
      },
    );
  });
}

export interface RestoreOptions {
  /** The new or empty folder the component's files go to. */
  dir: string;
  /** Where a pg_dump goes back (an empty database), when the archive holds one. */
  database?: string;
}

/** Writes an opened archive's files into an empty folder (and its dump into PostgreSQL). */
export async function restoreComponent(
  contents: ArchiveContents,
  o: RestoreOptions,
): Promise<{ files: number }> {
  if (existsSync(o.dir) && readdirSync(o.dir).length > 0)
    throw new PollenError('RESTORE_TARGET_NOT_EMPTY', `${o.dir} is not empty`);
  const dump = contents.files.find((f) => f.path === PG_DUMP_PATH && contents.database === 'postgres');
  if (dump && !o.database)
    throw new PollenError(
      'USAGE',
      'This archive holds a PostgreSQL dump: give --database postgres://… (an empty database) to restore it into',
      {
        hint: 'Create an empty database for the component, then run restore again with --database URL.',
      },
    );
  const root = resolve(o.dir);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  let written = 0;
  for (const f of contents.files) {
    if (f === dump) continue;
    const target = resolve(root, f.path);
    if (!target.startsWith(root + sep))
      throw new PollenError('BACKUP_TAMPERED', `The archive names a path outside its folder: ${f.path}`);
    mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
    const secret = PRIVATE_KEY.test(f.data.subarray(0, 1 << 20).toString('latin1'));
    writeFileSync(target, f.data, { mode: secret ? 0o600 : f.mode, flag: 'wx' });
    written++;
  }
  if (dump) await pgRestore(dump.data, o.database as string);
  return { files: written };
}

async function pgRestore(dump: Buffer, url: string): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'pollen-restore-'));
  const file = join(scratch, PG_DUMP_PATH);
  writeFileSync(file, dump, { mode: 0o600 });
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(
        'pg_restore',
        ['--no-owner', '--exit-on-error', '--dbname', url, file],
        (error, _out, stderr) => {
          if (!error) return resolve();
          reject(
            new PollenError('BACKUP_DATABASE_FAILED', 'pg_restore could not restore the database', {
              cause: error,
              detail: stderr,
            }),
          );
        },
      );
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
