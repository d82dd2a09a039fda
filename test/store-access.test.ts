/**
 * A store in a folder the process may not write: the common mistake of a container deployment
 * (a volume owned by root, the image running as uid 10001). Run as a real other user (`runuser`),
 * so the kernel refuses, as it does in production; root would be let through.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from './support/cli.js';

const DATABASE = join(import.meta.dirname, '..', 'dist', 'store', 'database.js');
const NOBODY = 65534;
const tmp = tempDir('pollen-store-access-');
afterAll(() => tmp.cleanup());

/** Opens a SQLite store at `url` as the user nobody; prints the outcome as JSON. */
function openAsNobody(url: string): { code: string; message: string; hint?: string } {
  const script = `
    const { openDatabase } = await import(${JSON.stringify(DATABASE)});
    try {
      const db = await openDatabase({ url: process.argv[1], migrations: {} });
      await db.close();
      console.log(JSON.stringify({ code: 'OK', message: '' }));
    } catch (e) {
      console.log(JSON.stringify({ code: e.code, message: e.message, hint: e.hint }));
    }`;
  const r = spawnSync(
    'runuser',
    ['-u', 'nobody', '--', process.execPath, '--input-type=module', '-e', script, url],
    {
      encoding: 'utf8',
    },
  );
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { code: string; message: string; hint?: string };
}

describe('a store the process may not write', () => {
  it('is refused as FILE_ACCESS_DENIED naming the folder and the uid, with what to do', () => {
    const volume = join(tmp.dir, 'root-owned');
    mkdirSync(volume, { mode: 0o755 });
    chmodSync(tmp.dir, 0o755);
    const r = openAsNobody(join(volume, 'state.db'));
    expect(r.code).toBe('FILE_ACCESS_DENIED');
    expect(r.message).toBe(`Permission denied: ${volume} (Pollen runs as uid ${NOBODY})`);
    expect(r.hint).toMatch(/chown/);
    // A folder that cannot be made at all (its parent is root's) is the same refusal.
    const nested = openAsNobody(join(volume, 'deeper', 'state.db'));
    expect([nested.code, nested.message]).toEqual([
      'FILE_ACCESS_DENIED',
      `Permission denied: ${join(volume, 'deeper')} (Pollen runs as uid ${NOBODY})`,
    ]);
  });

  it('a store file it may not write in a folder it may: names the file', () => {
    const folder = join(tmp.dir, 'shared');
    mkdirSync(folder, { mode: 0o755 });
    chownSync(folder, NOBODY, NOBODY);
    const file = join(folder, 'state.db');
    writeFileSync(file, '', { mode: 0o644 }); // root's, read-only to nobody
    const r = openAsNobody(file);
    expect([r.code, r.message]).toEqual([
      'FILE_ACCESS_DENIED',
      `Permission denied: ${file} (Pollen runs as uid ${NOBODY})`,
    ]);
  });

  it('once the folder is given to the user, the same store opens', () => {
    const folder = join(tmp.dir, 'given');
    mkdirSync(folder, { mode: 0o700 });
    chownSync(folder, NOBODY, NOBODY);
    expect(openAsNobody(join(folder, 'state.db')).code).toBe('OK');
  });
});
