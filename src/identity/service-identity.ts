/**
 * A service's settings about people, from files its operator names: the identity provider whose
 * access tokens it accepts (the `[identity.oidc]` section of a TOML file) and the access policy.
 * Both are checked when the service starts, before it listens.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import { PollenError } from '../errors.js';
import { loadAccessPolicy } from './access-policy-file.js';
import type { OidcConfig, TokenVerifier } from './identity.js';
import { parseOidcConfig } from './oidc-config.js';
import type { AccessPolicy } from './rights.js';
import { createTokenVerifier } from './token-verifier.js';

export interface ServiceIdentity {
  oidc?: OidcConfig;
  tokens?: TokenVerifier;
  accessPolicy: AccessPolicy;
}

/** The identity provider's settings from `file`'s `[identity.oidc]` section. */
export function readOidcSection(file: string): OidcConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new PollenError('FILE_NOT_FOUND', `Identity configuration not found: ${file}`);
    throw new PollenError('CONFIG_INVALID', `${file} is not valid TOML: ${(e as Error).message}`, {
      hint: 'Fix the file: its [identity.oidc] section is described in docs/identity.md.',
    });
  }
  const section = (doc.identity as Record<string, unknown> | undefined)?.oidc;
  if (section === undefined)
    throw new PollenError('CONFIG_INVALID', `${file} has no [identity.oidc] section`, {
      hint: 'Add [identity.oidc] with issuer, audience and client-id (docs/identity.md).',
    });
  return parseOidcConfig(section, `${file} [identity.oidc]`);
}

/** The service's identity settings, checked now: a bad file stops the service before it listens. */
export function serviceIdentity(files: { identityConfig?: string; accessPolicy?: string }): ServiceIdentity {
  const accessPolicy = loadAccessPolicy(files.accessPolicy || undefined);
  if (!files.identityConfig) return { accessPolicy };
  const oidc = readOidcSection(files.identityConfig);
  return { oidc, tokens: createTokenVerifier(oidc), accessPolicy };
}
