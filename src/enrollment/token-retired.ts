/**
 * Token key rotation. `token.key` signs new tokens; the public parts of earlier keys stay in
 * `token-keys.json` until the longest token they could have signed has expired, so a token is
 * verified with the key its `kid` names and nothing outstanding breaks. Earlier private keys are
 * destroyed at rotation: they are never needed again.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { PollenError } from '../errors.js';

export const RETIRED_TOKEN_KEYS_FILE = 'token-keys.json';

const retiredSchema = z.object({
  version: z.literal(1),
  retired: z.array(
    z.object({
      kid: z.string(),
      publicKey: z.string(),
      retiredAt: z.string(),
      /** After this instant no token signed with the key can still be valid: it is dropped. */
      dropAfter: z.string(),
    }),
  ),
});
export type RetiredTokenKeys = z.infer<typeof retiredSchema>;
export type RetiredTokenKey = RetiredTokenKeys['retired'][number];

/** The retired keys recorded in a CA folder (none when it was never rotated). */
export function readRetiredTokenKeys(caDir: string): RetiredTokenKeys {
  const path = join(resolve(caDir), RETIRED_TOKEN_KEYS_FILE);
  if (!existsSync(path)) return { version: 1, retired: [] };
  try {
    return retiredSchema.parse(JSON.parse(readFileSync(path, 'utf8')));
  } catch (e) {
    throw new PollenError('CA_NOT_FOUND', `${path} is not a valid list of retired token keys`, { cause: e });
  }
}

/** Public keys by kid of the retired keys still inside their overlap at `now`. */
export function retiredTokenVerificationKeys(caDir: string, now = new Date()): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  for (const r of readRetiredTokenKeys(caDir).retired)
    if (Date.parse(r.dropAfter) > now.getTime()) keys.set(r.kid, createPublicKey(r.publicKey));
  return keys;
}
