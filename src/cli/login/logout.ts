import * as oidc from 'openid-client';
import type { PollenError } from '../../errors.js';
import { configPath } from '../connections.js';
import { bold, type Output } from '../output.js';
import { resolveTarget } from '../target.js';
import { discoverIssuer, providerFailure } from './issuer.js';
import { deleteLogin, loginPath, readLogin, type StoredLogin } from './token-store.js';

export interface LogoutOptions {
  /** A SuperLink connection, or a federation on the default one (target.ts). */
  federation?: string;
  superlink?: string;
  config?: string;
}

/**
 * `pollen logout`: revoke the refresh token at the provider (RFC 7009, where it has a revocation
 * endpoint), then forget the tokens. The tokens are forgotten even when the provider cannot be
 * reached; the result says whether the revocation happened.
 */
export async function logout(o: LogoutOptions, out: Output): Promise<void> {
  const path = configPath(o.config);
  const { connection } = resolveTarget(o.federation, o);
  const file = loginPath(path, connection.name);
  const stored = readLogin(file);
  let revoked: Revocation = 'nothing';
  if (stored) {
    const r = await revokeLogin(stored);
    revoked = r.outcome;
    if (r.error) out.warn(`${r.error.message}; the refresh token was not revoked, only forgotten here`);
  }
  deleteLogin(file);
  out.result({ superlink: connection.name, loggedOut: stored !== undefined, revoked }, (d) =>
    d.loggedOut
      ? `logged out of ${bold(d.superlink)}${d.revoked === 'revoked' ? ' (refresh token revoked at the identity provider)' : ''}`
      : `not logged in to ${bold(d.superlink)}: nothing to do`,
  );
}

export type Revocation = 'revoked' | 'not-supported' | 'failed' | 'nothing';

/** Revoke a login's refresh token at its provider (RFC 7009), where it has a revocation endpoint. */
export async function revokeLogin(login: StoredLogin): Promise<{ outcome: Revocation; error?: PollenError }> {
  if (!login.refreshToken) return { outcome: 'nothing' };
  try {
    const config = await discoverIssuer(login.issuer, login.clientId);
    if (!config.serverMetadata().revocation_endpoint) return { outcome: 'not-supported' };
    await oidc.tokenRevocation(config, login.refreshToken, { token_type_hint: 'refresh_token' });
    return { outcome: 'revoked' };
  } catch (e) {
    return { outcome: 'failed', error: providerFailure(e, login.issuer) };
  }
}
