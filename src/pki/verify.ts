import { X509Certificate } from 'node:crypto';

/** Split a PEM bundle into its certificates, in order. */
export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * Check that `leafPem` chains to `rootPem` through the CA certificates in `chainPem` (signatures,
 * issuer names, CA flags and validity at `now`). The root is the only trust anchor.
 */
export function verifyChain(leafPem: string, chainPem: string, rootPem: string, now = new Date()): boolean {
  try {
    const root = new X509Certificate(rootPem);
    const leaf = new X509Certificate(splitPem(leafPem)[0] ?? leafPem);
    const cas = splitPem(chainPem)
      .map((p) => new X509Certificate(p))
      .filter((c) => c.ca && c.fingerprint256 !== root.fingerprint256);
    const valid = (c: X509Certificate) =>
      Date.parse(c.validFrom) <= now.getTime() && now.getTime() <= Date.parse(c.validTo);
    let current = leaf;
    for (let depth = 0; depth < 4; depth++) {
      if (!valid(current)) return false;
      if (current.checkIssued(root) && current.verify(root.publicKey)) return valid(root);
      const parent = cas.find((c) => current.checkIssued(c) && current.verify(c.publicKey));
      if (!parent) return false;
      current = parent;
    }
    return false;
  } catch {
    return false;
  }
}
