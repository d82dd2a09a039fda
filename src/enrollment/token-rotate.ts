/** `pollen cert rotate token-key`: a new token signing key, the old one kept for verification. */
import { generateKeyPairSync } from 'node:crypto';
import { join, resolve } from 'node:path';
import { writeFileAtomic, writeSecretFile } from '../util/files.js';
import { MAX_VALIDITY_MS } from './policy-match.js';
import { CA_FILES, loadTokenSigner, tokenSignerFromKey } from './token.js';
import { RETIRED_TOKEN_KEYS_FILE, type RetiredTokenKeys, readRetiredTokenKeys } from './token-retired.js';

export interface TokenKeyRotation {
  caDir: string;
  /** The key that signs new tokens from now on. */
  kid: string;
  /** The key it replaces; its public part verifies until `dropAfter`. */
  previousKid: string;
  dropAfter: string;
  /** Every kid a verifier accepts now (current first). */
  accepted: string[];
  /** Retired keys whose overlap had ended and were removed by this rotation. */
  dropped: string[];
}

/**
 * Replace `token.key` with a new P-256 key. The old public key is kept for `overlapMs` (default:
 * the longest validity a policy may give a token), expired retirees are dropped.
 */
export function rotateTokenKey(caDir: string, o: { now?: Date; overlapMs?: number } = {}): TokenKeyRotation {
  const dir = resolve(caDir);
  const now = o.now ?? new Date();
  const overlapMs = o.overlapMs ?? MAX_VALIDITY_MS;
  const current = loadTokenSigner(dir);
  const before = readRetiredTokenKeys(dir);
  const kept = before.retired.filter((r) => Date.parse(r.dropAfter) > now.getTime());
  const dropAfter = new Date(now.getTime() + overlapMs).toISOString();
  const retired: RetiredTokenKeys = {
    version: 1,
    retired: [
      {
        kid: current.kid,
        publicKey: current.publicKey.export({ type: 'spki', format: 'pem' }) as string,
        retiredAt: now.toISOString(),
        dropAfter,
      },
      ...kept.filter((r) => r.kid !== current.kid),
    ],
  };
  const next = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  // The retired list is written first: a crash between the two writes leaves the old key
  // signing and listed twice, which verifies exactly as before.
  writeFileAtomic(join(dir, RETIRED_TOKEN_KEYS_FILE), `${JSON.stringify(retired, null, 2)}\n`);
  writeSecretFile(
    join(dir, CA_FILES.tokenKey),
    next.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  );
  const { kid } = tokenSignerFromKey({ ...current, privateKey: next.privateKey });
  return {
    caDir: dir,
    kid,
    previousKid: current.kid,
    dropAfter,
    accepted: [kid, ...retired.retired.map((r) => r.kid)],
    dropped: before.retired.filter((r) => !kept.includes(r)).map((r) => r.kid),
  };
}
