import { createHash, createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { PollenError } from '../../errors.js';
import { certificateFingerprint, sameFingerprint } from '../../pki/fingerprint.js';
import { x509 } from '../../pki/keys.js';
import { hostsOfCertificate, readProfile, renewalTime } from '../../pki/profiles.js';
import { chainsToRoot, parseCertificates } from '../../pki/verify.js';
import { writeFileAtomic } from '../../util/files.js';
import type { CertificateInfo } from '../enroll-client.js';
import type { LoadedKit } from '../kit.js';
import { readIf, rel } from './context.js';

// The certificate a kit holds, and the one the Certificate Service sends: both are used only if
// they carry our key, chain to the pinned root and name us.

/** SHA-256 (hex) of a key's SubjectPublicKeyInfo: how state and certificates are matched to keys. */
export function publicKeyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

export const pem = (c: X509Certificate) => `${c.toString().trim()}\n`;

export type Existing =
  | {
      ok: true;
      info: CertificateInfo;
      leaf: X509Certificate;
      root: X509Certificate;
      pool: X509Certificate[];
      key: KeyObject;
    }
  | { ok: false; reason: string | null; expired: boolean };

export function certificateInfo(kit: LoadedKit, leaf: X509Certificate): CertificateInfo {
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  return {
    path: kit.paths.cert,
    keyPath: kit.paths.key,
    rootCaPath: kit.paths.rootCa,
    chainPath: kit.paths.chain,
    serial: leaf.serialNumber.toLowerCase(),
    fingerprint: certificateFingerprint(leaf),
    notBefore,
    notAfter,
    renewAt: renewalTime(notBefore, notAfter),
    hosts: hostsOfCertificate(leaf),
  };
}

/** Is this certificate about our name and type? */
function nameProblem(kit: LoadedKit, leaf: X509Certificate): string | null {
  const profile = readProfile(new x509.X509Certificate(leaf.raw));
  if (profile.name !== kit.config.name) return `it is for "${profile.name}", not "${kit.config.name}"`;
  if (profile.type !== undefined && profile.type !== kit.config.type)
    return `it is a ${profile.type} certificate, not a ${kit.config.type} one`;
  if (leaf.ca) return 'it is a CA certificate';
  return null;
}

export function sameKey(a: KeyObject, b: KeyObject): boolean {
  return publicKeyId(a) === publicKeyId(b);
}

/** Check startup/NAME.crt + NAME.key + rootCA.pem; a root that contradicts the pin is an error. */
export function checkExistingCertificate(kit: LoadedKit, now: Date, pin: string | null): Existing {
  const certPem = readIf(kit.paths.cert);
  if (certPem === null) return { ok: false, reason: null, expired: false };
  const name = rel(kit, kit.paths.cert);
  let certs: X509Certificate[];
  try {
    certs = parseCertificates(certPem);
  } catch {
    certs = [];
  }
  const leaf = certs[0];
  if (!leaf) return { ok: false, reason: `${name} is not a PEM certificate`, expired: false };
  const keyPem = readIf(kit.paths.key);
  if (keyPem === null) return { ok: false, reason: `${rel(kit, kit.paths.key)} is missing`, expired: false };
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    return {
      ok: false,
      reason: `${rel(kit, kit.paths.key)} is not a readable, unencrypted private key`,
      expired: false,
    };
  }
  if (!sameKey(key, leaf.publicKey))
    return { ok: false, reason: `${name} does not belong to ${rel(kit, kit.paths.key)}`, expired: false };
  const rootPem = readIf(kit.paths.rootCa);
  if (rootPem === null)
    return { ok: false, reason: `${rel(kit, kit.paths.rootCa)} is missing`, expired: false };
  let root: X509Certificate;
  try {
    root = new X509Certificate(rootPem);
  } catch {
    return { ok: false, reason: `${rel(kit, kit.paths.rootCa)} is not a PEM certificate`, expired: false };
  }
  if (pin && !sameFingerprint(certificateFingerprint(root), pin))
    throw new PollenError(
      'CA_FINGERPRINT_MISMATCH',
      `${rel(kit, kit.paths.rootCa)} (${certificateFingerprint(root)}) is not the pinned root CA ${pin}`,
    );
  const problem = nameProblem(kit, leaf);
  if (problem) return { ok: false, reason: `${name}: ${problem}`, expired: false };
  const info = certificateInfo(kit, leaf);
  if (now > info.notAfter)
    return { ok: false, reason: `${name} expired on ${info.notAfter.toISOString()}`, expired: true };
  if (now < info.notBefore)
    return {
      ok: false,
      reason: `${name} is not valid before ${info.notBefore.toISOString()}`,
      expired: false,
    };
  let pool = certs.slice(1);
  const chainPem = readIf(kit.paths.chain);
  if (chainPem !== null) {
    try {
      pool = [...pool, ...parseCertificates(chainPem)];
    } catch {
      // an unreadable chain.pem only matters if the intermediate is needed
    }
  }
  const chain = chainsToRoot(leaf, pool, root, now);
  if (!chain.ok) return { ok: false, reason: `${name}: ${chain.reason}`, expired: false };
  return { ok: true, info, leaf, root, pool: chain.path.slice(1, -1), key };
}

// ---------------------------------------------------------------------------------------------
// Issued certificates

const issuedSchema = z.object({
  status: z.literal('issued'),
  certificate: z.string(),
  chain: z.string(),
});
export interface Verified {
  leaf: X509Certificate;
  /** Intermediates between leaf and root, in order. */
  intermediates: X509Certificate[];
}

/** A certificate from the service is saved only if it carries our key, chains to the pinned root and names us. */
export function verifyIssued(
  kit: LoadedKit,
  json: unknown,
  key: KeyObject,
  root: X509Certificate,
  now: Date,
): Verified {
  const parsed = issuedSchema.safeParse(json);
  if (!parsed.success)
    throw new PollenError('CERT_INVALID', 'The Certificate Service answered without a certificate');
  let certs: X509Certificate[];
  let chain: X509Certificate[];
  try {
    certs = parseCertificates(parsed.data.certificate);
    chain = parseCertificates(parsed.data.chain);
  } catch (e) {
    throw new PollenError('CERT_INVALID', 'The Certificate Service returned an unreadable certificate', {
      cause: e,
    });
  }
  const leaf = certs[0];
  if (!leaf) throw new PollenError('CERT_INVALID', 'The Certificate Service returned no certificate');
  if (!sameKey(leaf.publicKey, key))
    throw new PollenError(
      'CERT_INVALID',
      'The issued certificate does not carry our public key; it was not saved',
    );
  const result = chainsToRoot(leaf, [...certs.slice(1), ...chain], root, now);
  if (!result.ok)
    throw new PollenError(
      'CERT_INVALID',
      `The issued certificate does not chain to the pinned root CA: ${result.reason}`,
    );
  const problem = nameProblem(kit, leaf);
  if (problem) throw new PollenError('CERT_INVALID', `The issued certificate is not ours: ${problem}`);
  return { leaf, intermediates: result.path.slice(1, -1) };
}

/** Save root, chain, then the certificate (its presence marks enrollment as done). */
export function saveCertificate(kit: LoadedKit, v: Verified, root: X509Certificate): void {
  const rootPem = pem(root);
  if (readIf(kit.paths.rootCa)?.trim() !== rootPem.trim()) writeFileAtomic(kit.paths.rootCa, rootPem, 0o644);
  writeFileAtomic(kit.paths.chain, [...v.intermediates, root].map(pem).join(''), 0o644);
  writeFileAtomic(kit.paths.cert, pem(v.leaf), 0o644);
}
