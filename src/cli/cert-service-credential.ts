/**
 * The credential a command sends to the Certificate Service's admin API, chosen as for the
 * SuperLink's Control API: a service-account secret (`--token-file` / POLLEN_TOKEN_FILE, then
 * POLLEN_TOKEN), then the stored login named by `--login SUPERLINK` (POLLEN_LOGIN; refreshed when
 * due), then the admin API key (`--api-key` / POLLEN_API_KEY). One credential per call: the
 * service refuses two.
 *
 * A Certificate Service is not a SuperLink, so the CLI cannot tell which login applies to it:
 * `--login` names the SuperLink connection whose login (`pollen login SUPERLINK`) to present. Its access
 * token must name the Certificate Service as an audience (docs/identity.md).
 */
import { PollenError } from '../errors.js';
import { bearerFromEnv } from './bearer.js';
import { configPath } from './connections.js';
import { loginPath } from './login/token-store.js';

export interface AdminCredentialFlags {
  /** `--api-key` / POLLEN_API_KEY. */
  apiKey?: string | undefined;
  /** `--login SUPERLINK` / POLLEN_LOGIN: present the stored login of this SuperLink connection. */
  login?: string | undefined;
  config?: string | undefined;
  tokenFile?: string | undefined;
}

/** The credential to send, or API_KEY_REQUIRED (LOGIN_REQUIRED for a `--login` that has none). */
export async function adminCredential(f: AdminCredentialFlags): Promise<string> {
  const secret = bearerFromEnv(f);
  if (secret !== undefined) return secret;
  const login = f.login?.trim();
  if (login) {
    // Loaded here: the OpenID client is needed only for a login, not for a secret or an API key.
    const { AccessTokens } = await import('./login/access-token.js');
    const tokens = AccessTokens.load(loginPath(configPath(f.config), login));
    if (!tokens)
      throw new PollenError('LOGIN_REQUIRED', `You are not logged in to ${login}`, {
        hint: `Log in: pollen login ${login}`,
      });
    return tokens.current();
  }
  const apiKey = f.apiKey?.trim();
  if (apiKey) return apiKey;
  throw new PollenError('API_KEY_REQUIRED', 'The Certificate Service needs a credential', {
    hint: 'Pass --login SUPERLINK (after pollen login SUPERLINK), give a service-account secret (POLLEN_TOKEN or --token-file), or an admin API key (--api-key or POLLEN_API_KEY, made with `pollen cert api-key`).',
  });
}
