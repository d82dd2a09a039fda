/**
 * A SuperLink's login, kept beside the config file (`~/.pollen/logins/NAME.json`, mode
 * 0600 in a 0700 folder): the tokens `pollen login` got and where they came from, so the CLI can
 * refresh them without asking the SuperLink again.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { PollenError } from '../../errors.js';
import { writeSecretFile } from '../../util/files.js';

const storedLoginSchema = z.object({
  federation: z.string(),
  issuer: z.string(),
  clientId: z.string(),
  audience: z.string(),
  accessToken: z.string(),
  refreshToken: z.string().optional(),
  /** Epoch ms when the access token expires. */
  expiresAt: z.number(),
  subject: z.string().optional(),
  email: z.string().optional(),
});

export type StoredLogin = z.infer<typeof storedLoginSchema>;

/** Where the login to SuperLink connection `federation` is kept, beside the config file `configFile`. */
export function loginPath(configFile: string, federation: string): string {
  return join(dirname(configFile), 'logins', `${federation}.json`);
}

export function readLogin(path: string): StoredLogin | undefined {
  if (!existsSync(path)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    raw = undefined;
  }
  const parsed = storedLoginSchema.safeParse(raw);
  if (!parsed.success)
    throw new PollenError('CONFIG_INVALID', `${path} is not a login Pollen wrote`, {
      hint: 'Remove it and log in again: pollen logout FEDERATION, then pollen login FEDERATION.',
    });
  return parsed.data;
}

export function saveLogin(path: string, login: StoredLogin): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeSecretFile(path, `${JSON.stringify(login, null, 2)}\n`);
}

export function deleteLogin(path: string): boolean {
  if (!existsSync(path)) return false;
  rmSync(path);
  return true;
}
