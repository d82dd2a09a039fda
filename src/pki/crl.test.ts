import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollenCodeOf } from '../../test/support/errors.js';
import { initCa, type LoadedCa, loadCa } from './ca.js';
import { rotateIntermediate } from './ca-rotate.js';
import {
  createCrl,
  createCrls,
  readCrlsOfKnownIssuers,
  readSignedCrl,
  readSignedCrls,
  serialKey,
} from './crl.js';
import { x509 } from './keys.js';
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

describe('readCrlsOfKnownIssuers', () => {
  it("after an intermediate rotation, a site that knows only the old intermediate reads the old one's list and leaves the new one's out", async () => {
    const dir = join(tmp, 'rotated');
    await initCa({ name: 'Crl Rotation', dir, keyType: 'ec-p256' });
    const before = await loadCa(dir);
    await rotateIntermediate(dir);
    const after = await loadCa(dir);
    expect(after.retiredIssuers.map((i) => i.cert.serialNumber)).toEqual([before.issuer.cert.serialNumber]);
    const revokedAt = new Date('2026-03-04T05:06:07Z');
    const bundle = await createCrls(
      [after.issuer, ...after.retiredIssuers],
      [{ serial: '0c0ffee', revokedAt }],
    );
    const oldChain = parseCertificates(`${before.rootPem}${before.intermediatePem}`);
    const read = await readCrlsOfKnownIssuers(bundle, oldChain, 'The list');
    expect(read.map((c) => c.issuer)).toEqual([before.intermediate.subject]);
    expect(read[0]!.entries.map((e) => serialKey(e.serialNumber))).toEqual(['c0ffee']);
    // The strict reader (a SuperLink's, which knows every intermediate) refuses the same bundle.
    expect(await pollenCodeOf(readSignedCrls(bundle, oldChain, 'The list'))).toBe('CERT_INVALID');
    const newChain = parseCertificates(`${after.rootPem}${after.intermediatePems.join('')}`);
    expect(await readCrlsOfKnownIssuers(bundle, newChain, 'The list')).toHaveLength(2);
  });

  it("refuses a list that names a known issuer and its key but carries another's signature", async () => {
    const ours = parseCertificates(`${ca.rootPem}${ca.intermediatePem}`);
    const forged = await x509.X509CrlGenerator.create({
      issuer: ca.issuer.cert.subjectName,
      thisUpdate: new Date(),
      signingKey: other.issuer.key,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [ca.issuer.aki],
      entries: [],
    });
    const text = forged.toString('pem');
    expect(await pollenCodeOf(readCrlsOfKnownIssuers(text, ours, 'The list'))).toBe('CERT_INVALID');
    await expect(readCrlsOfKnownIssuers(text, ours, 'The list')).rejects.toThrow(
      'The list is not signed by the project CA',
    );
    await expect(readCrlsOfKnownIssuers('garbage', ours, 'The list')).rejects.toThrow(
      'The list is not a CRL',
    );
  });
});

describe('serialKey', () => {
  it('compares serials as lowercase hex without separators or leading zeros', () => {
    expect(serialKey('00:0A:1B')).toBe('a1b');
    expect(serialKey('0a1b')).toBe('a1b');
    expect(serialKey('00')).toBe('0');
  });
});
