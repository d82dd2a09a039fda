/**
 * The bearer token a pipeline gives the CLI instead of a login or an admin certificate: a
 * service-account secret (`pollen_sa_…`) in POLLEN_TOKEN, or in a file named by `--token-file`
 * (POLLEN_TOKEN_FILE), which keeps it out of the environment of every child process.
 */
import { readFileSync } from 'node:fs';
import { PollenError } from '../errors.js';

export interface BearerSource {
  /** `--token-file`: a file holding the token (a trailing newline is fine). */
  tokenFile?: string | undefined;
}

/**
 * The token, or undefined when none is given. `--token-file` wins over POLLEN_TOKEN_FILE, which
 * wins over POLLEN_TOKEN (a flag over its variable, a file over a value). FILE_NOT_FOUND for a
 * file that cannot be read, INVALID_ARGUMENT for an empty token or one with spaces.
 */
export function bearerFromEnv(
  o: BearerSource = {},
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const file = o.tokenFile || env['POLLEN_TOKEN_FILE'] || undefined;
  let token: string | undefined;
  let from: string;
  if (file) {
    from = file;
    try {
      token = readFileSync(file, 'utf8');
    } catch (e) {
      throw new PollenError('FILE_NOT_FOUND', `Cannot read the token file ${file}`, {
        cause: e,
        hint: 'Give --token-file (or POLLEN_TOKEN_FILE) the file holding the secret `pollen service-account create` printed.',
      });
    }
  } else {
    from = 'POLLEN_TOKEN';
    token = env['POLLEN_TOKEN'];
    if (token === undefined || token === '') return undefined;
  }
  const t = token.trim();
  if (!/^[\x21-\x7e]+$/.test(t) || t.includes(','))
    throw new PollenError('INVALID_ARGUMENT', `${from} holds no token (one word, without spaces or commas)`, {
      hint: 'Put only the secret `pollen service-account create` printed (pollen_sa_…) there.',
    });
  return t;
}
