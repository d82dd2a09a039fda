/**
 * What an enrollment token says, for a person to read: its claims decoded, its signature checked
 * against a CA folder's token key when one is at hand, and whether it has expired. Reading never
 * fails on an expired token: it is reported as such.
 */
import { resolve } from 'node:path';
import { PollenError } from '../errors.js';
import type { SubjectType } from './policy.js';
import { decodeToken, decodeTokenHeader, loadTokenVerifier, verifyToken } from './token.js';

export type SignatureStatus = 'verified' | 'invalid' | 'not checked (no CA at hand)';

/** A token's claims and the outcome of the checks, named as `pollen token info --json` prints them. */
export interface TokenReport {
  token_id: string;
  subject: string;
  subject_type: SubjectType;
  roles: string[];
  /** The organisation the certificate will name (`O=`); null: none. */
  org: string | null;
  /** Server and relay tokens: the DNS names and IP addresses the certificate will name. */
  hosts: string[];
  issuer: string;
  audience: string;
  issued_at: string;
  not_before: string;
  expires_at: string;
  expired: boolean;
  max_uses: number;
  policy_project: string;
  policy_version: string;
  policy_sha256: string;
  root_ca_fingerprint: string;
  key_id: string | null;
  signature: SignatureStatus;
  /** Why the signature is invalid. */
  signature_note?: string;
}

/** A JWT time (whole seconds since the epoch) as an ISO time without milliseconds. */
export const isoSeconds = (sec: number): string => new Date(sec * 1000).toISOString().replace('.000Z', 'Z');

/**
 * Decode `token` and, with `caDir`, check that the CA folder's token key signed it and that it
 * pins that CA's root. An expired (or not yet valid) token with a good signature is `verified`;
 * `expired` says whether it is past its expiry at `now`.
 */
export function inspectToken(token: string, opts: { caDir?: string; now?: Date } = {}): TokenReport {
  const claims = decodeToken(token);
  const header = decodeTokenHeader(token);
  let signature: SignatureStatus = 'not checked (no CA at hand)';
  let signatureNote: string | undefined;
  const ca = opts.caDir;
  if (ca) {
    const v = loadTokenVerifier(ca);
    try {
      verifyToken(token, { keys: v.keys, issuer: v.issuer });
      signature = 'verified';
    } catch (e) {
      if (e instanceof PollenError && (e.code === 'TOKEN_EXPIRED' || e.code === 'TOKEN_NOT_YET_VALID'))
        signature = 'verified';
      else {
        signature = 'invalid';
        signatureNote = `not signed by the token key of the CA in ${resolve(ca)}`;
      }
    }
    if (signature === 'verified' && claims.pollen.root_ca_fingerprint !== v.rootFingerprint) {
      signature = 'invalid';
      signatureNote = `it pins a different root CA than ${resolve(ca)}`;
    }
  }
  const now = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  return {
    token_id: claims.jti,
    subject: claims.sub,
    subject_type: claims.pollen.subject_type,
    roles: claims.pollen.roles,
    org: claims.pollen.org ?? null,
    hosts: claims.pollen.hosts ?? [],
    issuer: claims.iss,
    audience: claims.aud,
    issued_at: isoSeconds(claims.iat),
    not_before: isoSeconds(claims.nbf),
    expires_at: isoSeconds(claims.exp),
    expired: claims.exp <= now,
    max_uses: claims.pollen.max_uses,
    policy_project: claims.pollen.policy.project,
    policy_version: claims.pollen.policy.version,
    policy_sha256: claims.pollen.policy.sha256,
    root_ca_fingerprint: claims.pollen.root_ca_fingerprint,
    key_id: typeof header.kid === 'string' ? header.kid : null,
    signature,
    ...(signatureNote && { signature_note: signatureNote }),
  };
}
