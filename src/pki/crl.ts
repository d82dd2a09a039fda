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
