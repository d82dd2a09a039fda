/**
 * The OpenID Provider as the CLI talks to it (`openid-client`): discovery, and its refusals as
 * Pollen errors. Plain http is accepted only for a provider on this machine (a demo or a test);
 * anywhere else the issuer must be https.
 */
import * as oidc from 'openid-client';
import { PollenError } from '../../errors.js';

export interface LoginDetails {
  issuer: string;
  clientId: string;
  /** The SuperLink: the `aud` its access tokens must carry, asked for as the resource indicator. */
  audience: string;
  scopes: string[];
}

/** Asked for when the SuperLink names no scopes: an identity, e-mail and a refresh token. */
export const DEFAULT_SCOPES = ['openid', 'profile', 'email', 'offline_access'];

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Fetch the provider's metadata (`/.well-known/openid-configuration`). */
export async function discoverIssuer(issuer: string, clientId: string): Promise<oidc.Configuration> {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new PollenError('INVALID_ARGUMENT', `The issuer ${issuer} is not a URL`);
  }
  const loopbackHttp = url.protocol === 'http:' && LOOPBACK.has(url.hostname);
  if (url.protocol !== 'https:' && !loopbackHttp)
    throw new PollenError('INVALID_ARGUMENT', `The issuer ${issuer} must be an https URL`, {
      hint: 'Tokens travel to and from the identity provider: only a provider on this machine (127.0.0.1) may use plain http.',
    });
  try {
    return await oidc.discovery(
      url,
      clientId,
      undefined,
      oidc.None(),
      loopbackHttp ? { execute: [oidc.allowInsecureRequests], timeout: 10 } : { timeout: 10 },
    );
  } catch (e) {
    throw providerFailure(e, issuer);
  }
}

/** The OAuth error a provider answered with (`authorization_pending`, `invalid_grant`…), if any. */
export function oauthError(e: unknown): string | undefined {
  return e instanceof oidc.ResponseBodyError ? e.error : undefined;
}

/** A failure to talk to the provider, as a Pollen error: unreachable, or refused with its reason. */
export function providerFailure(e: unknown, issuer: string): PollenError {
  if (e instanceof PollenError) return e;
  const error = oauthError(e);
  if (error) {
    const description = e instanceof oidc.ResponseBodyError ? e.error_description : undefined;
    return new PollenError(
      'LOGIN_FAILED',
      `The identity provider ${issuer} refused: ${error}${description ? ` (${description})` : ''}`,
      { cause: e, data: { error } },
    );
  }
  return new PollenError('LOGIN_ISSUER_UNREACHABLE', `Cannot reach the identity provider ${issuer}`, {
    detail: String(e instanceof Error && e.cause ? `${e.message}: ${e.cause}` : e),
    cause: e,
  });
}
