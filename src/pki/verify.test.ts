import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initCa, type LoadedCa, loadCa } from './ca.js';
import { describeKey } from './keys.js';
import { issueSiteCertificate } from './profiles.js';
import { chainsToRoot, parseCertificates, splitPem, verifyChain } from './verify.js';

let tmp: string;
let ca: LoadedCa;
let other: LoadedCa;
let leafPem: string;
const DAY = 86_400_000;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pollen-verify-'));
  await initCa({ name: 'Verify Test', dir: join(tmp, 'ca'), keyType: 'ec-p256' });
  await initCa({ name: 'Attacker', dir: join(tmp, 'other'), keyType: 'ec-p256' });
  ca = await loadCa(join(tmp, 'ca'));
  other = await loadCa(join(tmp, 'other'));
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  leafPem = issueSiteCertificate(
    ca.issuer,
    publicKey.export({ type: 'spki', format: 'der' }),
    describeKey(publicKey),
    { name: 'site', type: 'client', project: 'x' },
    DAY,
  ).pem;
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('chainsToRoot', () => {
  it('follows intermediates, and refuses other roots and expired certificates, saying which link failed', () => {
    const leaf = new X509Certificate(leafPem);
    const inter = new X509Certificate(ca.intermediatePem);
    const root = new X509Certificate(ca.rootPem);
    const ok = chainsToRoot(leaf, [inter], root);
    expect(ok.ok && ok.path.map((c) => c.fingerprint256)).toEqual(
      [leaf, inter, root].map((c) => c.fingerprint256),
    );
    expect(chainsToRoot(leaf, [], root)).toEqual({
      ok: false,
      reason: expect.stringMatching(/CN=site.*does not chain to the root CA/),
    });
    expect(chainsToRoot(leaf, [inter], new X509Certificate(other.rootPem)).ok).toBe(false);
    expect(chainsToRoot(leaf, [inter], root, new Date(Date.now() + 2 * DAY))).toEqual({
      ok: false,
      reason: expect.stringMatching(/is not valid at/),
    });
    // The leaf itself cannot serve as an issuer (not a CA).
    expect(chainsToRoot(inter, [leaf], root).ok).toBe(true);
    // An intermediate is no trust anchor.
    expect(chainsToRoot(leaf, [], inter)).toEqual({
      ok: false,
      reason: 'the root CA certificate is not a self-signed CA certificate',
    });
  });
});

describe('verifyChain', () => {
  it('answers chainsToRoot on PEM bundles, and false for anything unreadable', () => {
    const bundle = `${leafPem}\n${ca.intermediatePem}\n`;
    expect(verifyChain(bundle, ca.intermediatePem, ca.rootPem)).toBe(true);
    expect(verifyChain(leafPem, '', ca.rootPem)).toBe(false);
    expect(verifyChain(leafPem, ca.intermediatePem, other.rootPem)).toBe(false);
    expect(verifyChain(leafPem, ca.intermediatePem, ca.rootPem, new Date(Date.now() + 2 * DAY))).toBe(false);
    expect(verifyChain('not a certificate', ca.intermediatePem, ca.rootPem)).toBe(false);
  });

  it('splits and parses bundles in order', () => {
    const bundle = `junk\n${leafPem}\n${ca.intermediatePem}`;
    expect(splitPem(bundle)).toHaveLength(2);
    expect(parseCertificates(bundle).map((c) => c.subject.includes('CN=site'))).toEqual([true, false]);
  });
});
