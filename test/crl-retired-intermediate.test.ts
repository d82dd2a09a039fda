/**
 * Revoking what an intermediate issued after that intermediate was rotated out: the CA keeps the
 * retired intermediate's key while it is in the chain, the published list holds one CRL per
 * intermediate, and a certificate is checked against its own issuer's CRL — by OpenSSL, by the
 * Certificate Service's consumers (crlOfIssuer, doctor) and by the SuperLink's RevocationList.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { initCa, type LoadedCa, loadCa } from '../src/pki/ca.js';
import { rotateIntermediate } from '../src/pki/ca-rotate.js';
import { createCrl, crlOfIssuer, readSignedCrls, serialKey } from '../src/pki/crl.js';
import { createSiteCertificate, revokeLocal } from '../src/pki/site.js';
import { parseCertificates } from '../src/pki/verify.js';
import { RevocationList } from '../src/superlink/revocation.js';
import { openssl, tempDir } from './support/cli.js';

const t = tempDir('pollen-crl-retired-');
afterAll(t.cleanup);
const caDir = join(t.dir, 'ca');
let ca: LoadedCa;
const leaf = (path: string) => readFileSync(path, 'utf8').split(/(?<=-----END CERTIFICATE-----)/)[0]!;
let oldCert: string;
let newCert: string;

beforeAll(async () => {
  await initCa({ name: 'Crl Rotation', dir: caDir, keyType: 'ec-p256' });
  const before = await loadCa(caDir);
  oldCert = (
    await createSiteCertificate(before, {
      name: 'site-old',
      type: 'client',
      outDir: join(t.dir, 'c1'),
      validityDays: 30,
    })
  ).certPath;
  await rotateIntermediate(caDir);
  ca = await loadCa(caDir);
  writeFileSync(join(t.dir, 'old-leaf.pem'), leaf(oldCert));
  newCert = (
    await createSiteCertificate(ca, {
      name: 'site-new',
      type: 'client',
      outDir: join(t.dir, 'c2'),
      validityDays: 30,
    })
  ).certPath;
});

/** `openssl verify -crl_check` of a leaf against the chain and a CRL file: its last line. */
function verify(cert: string, crlFile: string): string {
  writeFileSync(join(t.dir, 'chain.pem'), ca.intermediatePems.join('\n'));
  writeFileSync(join(t.dir, 'root.pem'), ca.rootPem);
  const r = openssl([
    'verify',
    '-crl_check',
    '-CAfile',
    join(t.dir, 'root.pem'),
    '-untrusted',
    join(t.dir, 'chain.pem'),
    '-CRLfile',
    crlFile,
    cert,
  ]);
  return r.out.trim();
}

it('keeps the retired intermediate as a CRL signer, and writes one CRL per intermediate', async () => {
  expect(ca.retiredIssuers).toHaveLength(1);
  const { crlPath } = await revokeLocal(ca, { names: ['site-old'] });
  const text = readFileSync(crlPath, 'utf8');
  const crls = await readSignedCrls(
    text,
    parseCertificates(`${ca.rootPem}\n${ca.intermediatePems.join('\n')}`),
    'L',
  );
  expect(crls).toHaveLength(2);
  const oldX = parseCertificates(leaf(oldCert))[0]!;
  const newX = parseCertificates(leaf(newCert))[0]!;
  // Each certificate finds its own issuer's list; the old one is on it.
  const ofOld = crlOfIssuer(crls, oldX)!;
  const ofNew = crlOfIssuer(crls, newX)!;
  expect(ofOld).toBeDefined();
  expect(ofNew).toBeDefined();
  expect(ofOld).not.toBe(ofNew);
  expect(ofOld.entries.map((e) => serialKey(e.serialNumber))).toContain(serialKey(oldX.serialNumber));
  // OpenSSL agrees: the old certificate is revoked, the new one verifies.
  expect(verify(join(t.dir, 'old-leaf.pem'), crlPath)).toContain('certificate revoked');
  expect(verify(newCert, crlPath)).toContain('OK');
});

it('a list of the current intermediate alone cannot speak for the old one: OpenSSL refuses to decide, crlOfIssuer finds none', async () => {
  const only = join(t.dir, 'current-only.pem');
  const oldX = parseCertificates(leaf(oldCert))[0]!;
  writeFileSync(only, await createCrl(ca.issuer, [{ serial: oldX.serialNumber, revokedAt: new Date() }]));
  expect(verify(join(t.dir, 'old-leaf.pem'), only)).toMatch(
    /unable to get certificate CRL|CRL signature failure/,
  );
  const crls = await readSignedCrls(
    readFileSync(only, 'utf8'),
    parseCertificates(ca.rootPem + ca.intermediatePem),
    'L',
  );
  expect(crlOfIssuer(crls, oldX)).toBeUndefined();
});

it("refuses a bundle one of whose lists another CA signed; the SuperLink enforces the retired issuer's list", async () => {
  const otherDir = join(t.dir, 'other');
  await initCa({ name: 'Crl Rotation', dir: otherDir, keyType: 'ec-p256' });
  const other = await loadCa(otherDir);
  const ours = readFileSync(join(caDir, 'crl.pem'), 'utf8');
  const forged = `${ours}${await createCrl(other.issuer, [])}`;
  const issuers = parseCertificates(`${ca.rootPem}\n${ca.intermediatePems.join('\n')}`);
  await expect(readSignedCrls(forged, issuers, 'The list')).rejects.toMatchObject({ code: 'CERT_INVALID' });

  const list = new RevocationList({
    file: join(caDir, 'crl.pem'),
    ca: `${ca.rootPem}\n${ca.intermediatePems.join('\n')}`,
    log: pino({ level: 'silent' }),
  });
  await list.start();
  list.stop();
  expect(list.isRevoked(parseCertificates(leaf(oldCert))[0]!.serialNumber)).toBe(true);
  expect(list.isRevoked(parseCertificates(leaf(newCert))[0]!.serialNumber)).toBe(false);
});
