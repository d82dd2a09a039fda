import { createHash, X509Certificate } from 'node:crypto';

/**
 * The one fingerprint format Pollen shows and pins: `sha256:` + lowercase hex of the SHA-256 of
 * the certificate's DER encoding. `openssl x509 -noout -fingerprint -sha256` prints the same
 * digest in upper case with colons; `sameFingerprint` accepts either form.
 */
export function certificateFingerprint(cert: string | Uint8Array | X509Certificate): string {
  const der =
    cert instanceof X509Certificate
      ? cert.raw
      : typeof cert === 'string'
        ? new X509Certificate(cert).raw
        : Buffer.from(cert);
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

/** Normalise `sha256:ab..`, `AB:CD:..` or bare hex to `sha256:<lowercase hex>`; undefined if malformed. */
export function normaliseFingerprint(value: string): string | undefined {
  const hex = value
    .trim()
    .replace(/^sha256[:=]/i, '')
    .replaceAll(':', '')
    .toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? `sha256:${hex}` : undefined;
}

export function sameFingerprint(a: string, b: string): boolean {
  const x = normaliseFingerprint(a);
  return x !== undefined && x === normaliseFingerprint(b);
}
