import { X509Certificate } from 'node:crypto';

/** Split a PEM bundle into its certificates' PEM blocks, in order. */
export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** The certificates of a PEM bundle, in order (throws on a block that is not a certificate). */
export function parseCertificates(bundle: string): X509Certificate[] {
  return splitPem(bundle).map((b) => new X509Certificate(b));
}

function validAt(cert: X509Certificate, at: Date): boolean {
  return new Date(cert.validFrom) <= at && at <= new Date(cert.validTo);
}

export type ChainResult = { ok: true; path: X509Certificate[] } | { ok: false; reason: string };

/**
 * Does `leaf` chain to `root` through CA certificates from `pool`? Checks issuer names,
 * signatures, that every issuer is a CA, that the root is a self-signed CA, and validity at `at`.
 * The root is the only trust anchor; the reason says which link failed.
 */
export function chainsToRoot(
  leaf: X509Certificate,
  pool: readonly X509Certificate[],
  root: X509Certificate,
  at: Date = new Date(),
): ChainResult {
  if (!root.ca || !root.checkIssued(root) || !root.verify(root.publicKey))
    return { ok: false, reason: 'the root CA certificate is not a self-signed CA certificate' };
  if (!validAt(root, at))
    return { ok: false, reason: `the root CA certificate is not valid at ${at.toISOString()}` };
  const path = [leaf];
  let cur = leaf;
  for (let depth = 0; depth < 6; depth++) {
    if (!validAt(cur, at))
      return {
        ok: false,
        reason: `"${cur.subject.replace(/\n/g, ', ')}" is not valid at ${at.toISOString()}`,
      };
    if (cur.checkIssued(root) && cur.verify(root.publicKey)) return { ok: true, path: [...path, root] };
    const issuer = pool.find(
      (c) =>
        c.ca &&
        !path.some((p) => p.fingerprint256 === c.fingerprint256) &&
        cur.checkIssued(c) &&
        cur.verify(c.publicKey),
    );
    if (!issuer)
      return { ok: false, reason: `"${cur.subject.replace(/\n/g, ', ')}" does not chain to the root CA` };
    path.push(issuer);
    cur = issuer;
  }
  return { ok: false, reason: 'the certificate chain is too long' };
}

/** chainsToRoot on PEM: the first certificate of `leafPem`, the CA certificates of `chainPem`. */
export function verifyChain(leafPem: string, chainPem: string, rootPem: string, now = new Date()): boolean {
  try {
    const leaf = parseCertificates(leafPem)[0] ?? new X509Certificate(leafPem);
    return chainsToRoot(leaf, parseCertificates(chainPem), new X509Certificate(rootPem), now).ok;
  } catch {
    return false;
  }
}
