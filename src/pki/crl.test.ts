import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollenCodeOf } from '../../test/support/errors.js';
import { initCa, type LoadedCa, loadCa } from './ca.js';
import { createCrl, readSignedCrl, serialKey } from './crl.js';
import { parseCertificates } from './verify.js';

let tmp: string;
let ca: LoadedCa;
let other: LoadedCa;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pollen-crl-'));
  await initCa({ name: 'Crl Test', dir: join(tmp, 'ca'), keyType: 'ec-p256' });
  await initCa({ name: 'Attacker', dir: join(tmp, 'other'), keyType: 'ec-p256' });
  ca = await loadCa(join(tmp, 'ca'));
  other = await loadCa(join(tmp, 'other'));
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('readSignedCrl', () => {
  it('reads a CRL the project CA signed, with its entries', async () => {
    const revokedAt = new Date('2026-01-02T03:04:05Z');
    const pem = await createCrl(ca.issuer, [{ serial: '0a1b', revokedAt, reason: 'keyCompromise' }]);
    const crl = await readSignedCrl(pem, parseCertificates(`${ca.rootPem}${ca.intermediatePem}`), 'The list');
    expect(crl.entries.map((e) => [serialKey(e.serialNumber), e.revocationDate.toISOString()])).toEqual([
      ['a1b', revokedAt.toISOString()],
    ]);
  });

  it('refuses a list another CA signed, and text that is no CRL, naming the list', async () => {
    const ours = parseCertificates(`${ca.rootPem}${ca.intermediatePem}`);
    const forged = await createCrl(other.issuer, []);
    await expect(readSignedCrl(forged, ours, 'The list')).rejects.toThrow(
      'The list is not signed by the project CA',
    );
    expect(await pollenCodeOf(readSignedCrl(forged, ours, 'The list'))).toBe('CERT_INVALID');
    await expect(readSignedCrl('garbage', ours, 'The list')).rejects.toThrow('The list is not a CRL');
    expect(await pollenCodeOf(readSignedCrl('garbage', ours, 'The list'))).toBe('CERT_INVALID');
  });
});

describe('serialKey', () => {
  it('compares serials as lowercase hex without separators or leading zeros', () => {
    expect(serialKey('00:0A:1B')).toBe('a1b');
    expect(serialKey('0a1b')).toBe('a1b');
    expect(serialKey('00')).toBe('0');
  });
});
