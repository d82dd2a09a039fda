import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initCa, type LoadedCa, loadCa } from '../pki/ca.js';
import { createCrl } from '../pki/crl.js';
import { RevocationList } from './revocation.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-crl-'));
let ca: LoadedCa;
const HOUR = 3_600_000;

beforeAll(async () => {
  await initCa({ name: 'crl', dir: join(dir, 'ca') });
  ca = await loadCa(join(dir, 'ca'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function logger() {
  const lines: string[] = [];
  return { lines, log: pino({ level: 'warn' }, { write: (s: string) => lines.push(s) }) };
}

let n = 0;
/** Write a CRL revoking `serials`, issued `agoMs` ago and valid for `lifetimeMs`; bump the mtime. */
async function writeCrl(file: string, serials: string[], agoMs: number, lifetimeMs = 24 * HOUR) {
  const now = new Date(Date.now() - agoMs);
  writeFileSync(
    file,
    await createCrl(
      ca.issuer,
      serials.map((serial) => ({ serial, revokedAt: now })),
      now,
      lifetimeMs,
    ),
  );
  const t = Date.now() / 1000 + n++;
  utimesSync(file, t, t);
}

describe('RevocationList freshness', () => {
  it('refuses a list older than the one it holds (no replay of a list from before a revocation)', async () => {
    const file = join(dir, 'a.crl');
    const { lines, log } = logger();
    await writeCrl(file, ['0a'], HOUR);
    const list = new RevocationList({ file, ca: ca.chainPem, log });
    await list.refresh(true);
    expect(list.isRevoked('0A')).toBe(true);
    await writeCrl(file, [], 2 * HOUR); // older, and without the revocation
    await list.refresh(false);
    expect(list.isRevoked('0a')).toBe(true);
    expect(lines.join('')).toMatch(/older .* than the one held/);
    await writeCrl(file, [], 0); // newer: taken
    await list.refresh(false);
    expect(list.isRevoked('0a')).toBe(false);
    expect(list.stale).toBe(false);
  });

  it('keeps enforcing a list past its nextUpdate, and says so on every refresh', async () => {
    const file = join(dir, 'b.crl');
    const { lines, log } = logger();
    await writeCrl(file, ['0b'], 2 * HOUR, HOUR);
    const list = new RevocationList({ file, ca: ca.chainPem, log });
    await list.refresh(true);
    expect(list.stale).toBe(true);
    expect(list.isRevoked('0b')).toBe(true);
    await list.refresh(false);
    expect(lines.filter((l) => /past its nextUpdate/.test(l)).length).toBe(2);
  });
});
