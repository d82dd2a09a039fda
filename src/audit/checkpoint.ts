/**
 * Signed checkpoints: the chain's head {component, seq, hash, at}, signed with the component's
 * TLS server key and carrying its certificate chain, so anyone holding the project root can check
 * that the component itself vouched for that head. A checkpoint kept elsewhere (or by the service)
 * shows a later truncation of the tail, or a chain recomputed from a changed entry.
 */
import { createPrivateKey, sign, verify, X509Certificate } from 'node:crypto';
import { chainsToRoot, parseCertificates } from '../pki/verify.js';

export interface Checkpoint {
  /** The component that signed it: `superlink`, `cert-service`. */
  component: string;
  seq: number;
  hash: string;
  /** When it was signed (ISO 8601). */
  at: string;
  /** base64 signature over `checkpointPayload`. */
  signature: string;
  /** The signer's certificate, then its intermediates (PEM). */
  certificate: string;
}

/** What a component signs checkpoints with: its TLS server key and certificate chain. */
export interface CheckpointSigner {
  component: string;
  key: string;
  certificate: string;
}

/** The exact bytes signed: one field a line, after a fixed label. */
export function checkpointPayload(c: Pick<Checkpoint, 'component' | 'seq' | 'hash' | 'at'>): Buffer {
  return Buffer.from(`pollen-audit-checkpoint\n${c.component}\n${c.seq}\n${c.hash}\n${c.at}`);
}

/** ECDSA and RSA sign over SHA-256; Ed25519 takes no digest. */
function digestFor(keyType: string | undefined): string | null {
  return keyType === 'ed25519' || keyType === 'ed448' ? null : 'sha256';
}

export function signCheckpoint(
  s: CheckpointSigner,
  head: { seq: number; hash: string },
  at: Date,
): Checkpoint {
  const body = { component: s.component, seq: head.seq, hash: head.hash, at: at.toISOString() };
  const key = createPrivateKey(s.key);
  const signature = sign(digestFor(key.asymmetricKeyType), checkpointPayload(body), key).toString('base64');
  return { ...body, signature, certificate: s.certificate };
}

/**
 * Why `c` is not a checkpoint the project's component signed, or undefined: its certificate must
 * chain to `rootPem`, be valid when it was signed, be a server certificate of the project, and
 * its key must have signed these fields.
 */
export function checkpointSignatureProblem(c: Checkpoint, rootPem: string): string | undefined {
  let certs: X509Certificate[];
  let root: X509Certificate;
  try {
    certs = parseCertificates(c.certificate);
    root = new X509Certificate(rootPem);
  } catch {
    return 'its certificate cannot be read';
  }
  const [leaf, ...pool] = certs;
  if (!leaf) return 'it carries no certificate';
  const at = new Date(c.at);
  if (Number.isNaN(at.getTime())) return 'its time cannot be read';
  const chain = chainsToRoot(leaf, pool, root, at);
  if (!chain.ok) return `its certificate does not chain to the project root: ${chain.reason}`;
  if (!/URI:pollen:\/\/[^/]+\/(server|service)\//.test(leaf.subjectAltName ?? ''))
    return 'its certificate is not a server certificate of the project';
  const ok = verify(
    digestFor(leaf.publicKey.asymmetricKeyType),
    checkpointPayload(c),
    leaf.publicKey,
    Buffer.from(c.signature, 'base64'),
  );
  return ok ? undefined : 'its signature does not match its fields';
}
