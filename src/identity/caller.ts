/**
 * One identity per call, from one credential: an admin certificate, an OIDC access token or a
 * service-account secret (both `Authorization: Bearer`), or an API key (the Certificate Service).
 * A call that carries two credentials is refused, never resolved by preferring one, so no source
 * of roles can widen another.
 */
import { PollenError } from '../errors.js';
import type { PeerIdentity } from '../transport/tls.js';
import {
  type Identity,
  isRole,
  type Role,
  SERVICE_ACCOUNT_PREFIX,
  type ServiceAccountAuth,
  type TokenVerifier,
} from './identity.js';

/** What a service accepts besides its own credential (admin certificate, API key). */
export interface BearerSources {
  /** OIDC access tokens; none: the service accepts no login (OIDC_NOT_CONFIGURED). */
  tokens?: TokenVerifier;
  /** Service-account secrets (`pollen_sa_…`); none: SERVICE_ACCOUNTS_UNAVAILABLE. */
  serviceAccounts?: ServiceAccountAuth;
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/**
 * The one bearer credential of a call, or undefined without an `authorization` header. `headers`
 * are every `authorization` header as received; a comma-joined value (how HTTP folds repeated
 * headers) counts as several. Two credentials: IDENTITY_AMBIGUOUS.
 */
export function bearerCredential(headers: readonly string[]): string | undefined {
  const values = headers.flatMap((h) => h.split(',')).map((v) => v.trim());
  if (values.length === 0 || (values.length === 1 && values[0] === '')) return undefined;
  if (values.length > 1)
    throw new PollenError('IDENTITY_AMBIGUOUS', 'The call carries more than one credential', {
      data: { credentials: values.length },
    });
  const m = BEARER.exec(values[0]!);
  if (!m) throw new PollenError('AUTHORIZATION_MALFORMED', 'The authorization header is not `Bearer TOKEN`');
  return m[1]!;
}

/** A compact JWS (three base64url parts): an access token, not an API key or a secret. */
export function isJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/** The identity of a bearer token: a service-account secret or an OIDC access token. */
export async function bearerIdentity(token: string, s: BearerSources): Promise<Identity> {
  if (token.startsWith(SERVICE_ACCOUNT_PREFIX)) {
    if (!s.serviceAccounts)
      throw new PollenError('SERVICE_ACCOUNTS_UNAVAILABLE', 'This service takes no service-account secrets');
    return s.serviceAccounts.authenticate(token);
  }
  if (!s.tokens)
    throw new PollenError(
      'OIDC_NOT_CONFIGURED',
      'This service accepts no login tokens (no identity provider is configured)',
    );
  return s.tokens.verify(token);
}

/**
 * The identity of an admin certificate: its name, `O=` and role. An admin certificate that names
 * no role (`pollen package -t admin`, `pollen cert site -t admin`) is a project admin: only the
 * CA's holder can make one. A role Pollen does not know grants nothing (default deny).
 */
export function certificateIdentity(peer: PeerIdentity): Identity {
  const roles: Role[] = peer.role === undefined ? ['project_admin'] : isRole(peer.role) ? [peer.role] : [];
  return { kind: 'certificate', subject: peer.name, name: peer.name, org: peer.org, roles };
}
