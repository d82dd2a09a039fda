import type { X509Certificate } from 'node:crypto';
import { PollenError } from '../errors.js';
import { signingAlgorithm, x509 } from './keys.js';
import type { Issuer } from './profiles.js';

export interface RevokedEntry {
  serial: string;
  revokedAt: Date;
  reason?: 'keyCompromise' | 'superseded' | 'cessationOfOperation' | 'unspecified';
}

const REASONS: Record<NonNullable<RevokedEntry['reason']>, x509.X509CrlReason> = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
};

/** Sign a CRL with the issuing (intermediate) CA. PEM header is `X509 CRL`, as OpenSSL expects. */
export async function createCrl(
  issuer: Issuer,
  entries: RevokedEntry[],
  now = new Date(),
  lifetimeMs = 24 * 3600_000,
): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.cert.subjectName,
    thisUpdate: now,
    nextUpdate: new Date(now.getTime() + lifetimeMs),
    signingKey: issuer.key,
    signingAlgorithm: signingAlgorithm(issuer.keyInfo),
    extensions: [issuer.aki],
    entries: entries.map((e) => ({
      serialNumber: e.serial,
      revocationDate: e.revokedAt,
      reason: REASONS[e.reason ?? 'unspecified'],
    })),
  });
  return crl.toString('pem').replace(/-----(BEGIN|END) CRL-----/g, '-----$1 X509 CRL-----');
}

/**
 * One CRL per issuer, concatenated: the current intermediate's first, then each retired one's
 * still in the chain. A certificate is checked against the CRL of the intermediate that issued
 * it (`crlOfIssuer`): a list signed by another is no statement about it, for Pollen as for
 * OpenSSL. Each lists every revoked serial (serials are random 128-bit numbers: one issuer's
 * never names another's certificate), so no issuer has to be told which certificates are its.
 */
export async function createCrls(
  issuers: readonly Issuer[],
  entries: RevokedEntry[],
  now = new Date(),
  lifetimeMs = 24 * 3600_000,
): Promise<string> {
  const pems = await Promise.all(issuers.map((i) => createCrl(i, entries, now, lifetimeMs)));
  return pems.map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('');
}

/** A serial as CRLs are compared: lowercase hex without colons or leading zeros. */
export function serialKey(serial: string): string {
  return serial
    .toLowerCase()
    .replace(/[^0-9a-f]/g, '')
    .replace(/^0+(?=.)/, '');
}

const CRL_BLOCK = /-----BEGIN (?:X509 )?CRL-----[\s\S]+?-----END (?:X509 )?CRL-----/g;

/**
 * Parse every CRL of a PEM bundle (one per intermediate: createCrls) and check each was signed by
 * one of `issuers`; one that was not fails the whole bundle.
 */
export async function readSignedCrls(
  text: string,
  issuers: readonly X509Certificate[],
  what: string,
): Promise<x509.X509Crl[]> {
  const blocks = text.match(CRL_BLOCK) ?? [text];
  return Promise.all(blocks.map((b) => readSignedCrl(b, issuers, what)));
}

/**
 * The CRLs of a bundle that were issued by one of `issuers`, each checked to carry its issuer's
 * signature. A CRL of an issuer the reader does not know (by name and key identifier) is left
 * out instead of failing the bundle: after `pollen cert rotate intermediate`, a site enrolled
 * under the old intermediate gets the new one's list too, which it cannot verify and which says
 * nothing about its certificate. A list that names a known issuer but fails its signature still
 * fails the bundle (forged or corrupted).
 */
export async function readCrlsOfKnownIssuers(
  text: string,
  issuers: readonly X509Certificate[],
  what: string,
): Promise<x509.X509Crl[]> {
  const known = issuers.map((i) => new x509.X509Certificate(i.raw));
  const blocks = text.match(CRL_BLOCK) ?? [text];
  const crls: x509.X509Crl[] = [];
  for (const block of blocks) {
    const crl = parseCrl(block, what);
    const key = authorityKeyId(crl);
    const issuer = known.find(
      (c) => c.subject === crl.issuer && (key === undefined || subjectKeyId(c) === key),
    );
    if (!issuer) continue;
    if (!(await crl.verify({ publicKey: issuer.publicKey }).catch(() => false)))
      throw new PollenError('CERT_INVALID', `${what} is not signed by the project CA`);
    crls.push(crl);
  }
  return crls;
}

/** The subject key identifier (hex) of a certificate, if it carries one. */
function subjectKeyId(c: x509.X509Certificate): string | undefined {
  return c.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId.toLowerCase();
}

function parseCrl(text: string, what: string): x509.X509Crl {
  try {
    return new x509.X509Crl(text);
  } catch (e) {
    throw new PollenError('CERT_INVALID', `${what} is not a CRL`, { cause: e });
  }
}

/** The authority key identifier (hex) of a certificate or CRL, if it names one. */
function authorityKeyId(o: x509.X509Certificate | x509.X509Crl): string | undefined {
  const ext = o.getExtension(x509.AuthorityKeyIdentifierExtension);
  return ext?.keyId?.toLowerCase();
}

/**
 * The CRL of the CA that issued `cert` (same issuer name and authority key), or undefined when
 * the bundle has none: then its revocation cannot be checked.
 */
export function crlOfIssuer(crls: readonly x509.X509Crl[], cert: X509Certificate): x509.X509Crl | undefined {
  const c = new x509.X509Certificate(cert.raw);
  const key = authorityKeyId(c);
  return crls.find((crl) => crl.issuer === c.issuer && authorityKeyId(crl) === key);
}

/**
 * Parse a PEM CRL and check that one of `issuers` (the project's root and intermediates) signed
 * it. `what` names the list in the CERT_INVALID errors ("The revocation list", …).
 */
export async function readSignedCrl(
  text: string,
  issuers: readonly X509Certificate[],
  what: string,
): Promise<x509.X509Crl> {
  const crl = parseCrl(text, what);
  for (const issuer of issuers) {
    const publicKey = new x509.X509Certificate(issuer.raw).publicKey;
    if (await crl.verify({ publicKey }).catch(() => false)) return crl;
  }
  throw new PollenError('CERT_INVALID', `${what} is not signed by the project CA`);
}
