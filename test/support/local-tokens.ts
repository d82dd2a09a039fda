/**
 * Access tokens for tests of who calls what: ES256 tokens signed with a local key and a
 * `TokenVerifier` that checks them with jose and reads `sub`, `email`, `org` and `roles` as they
 * are. It stands in for the OIDC verifier (identity/token-verifier.ts) where a test is about
 * rights, not about token checks.
 */
import { generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { PollenError } from '../../src/errors.js';
import { type Identity, isRole, type TokenVerifier } from '../../src/identity/identity.js';

export const LOCAL_ISSUER = 'https://idp.test';
export const LOCAL_AUDIENCE = 'pollen-test';

export interface LocalTokens {
  verifier: TokenVerifier;
  /** A token for a person with these roles, in organisation `org` (none when undefined). */
  sign(
    sub: string,
    o: { roles: string[]; org?: string; email?: string; emailVerified?: boolean },
  ): Promise<string>;
}

export async function localTokens(): Promise<LocalTokens> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return {
    async sign(sub, o) {
      return new SignJWT({
        roles: o.roles,
        ...(o.org && { org: o.org }),
        email: o.email ?? sub,
        ...(o.emailVerified !== undefined && { email_verified: o.emailVerified }),
      })
        .setProtectedHeader({ alg: 'ES256', kid: 'local' })
        .setSubject(sub)
        .setIssuer(LOCAL_ISSUER)
        .setAudience(LOCAL_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
    },
    verifier: {
      async verify(token): Promise<Identity> {
        try {
          const { payload } = await jwtVerify(token, publicKey, {
            issuer: LOCAL_ISSUER,
            audience: LOCAL_AUDIENCE,
            algorithms: ['ES256'],
          });
          const roles = Array.isArray(payload.roles) ? payload.roles.filter((r) => isRole(String(r))) : [];
          return {
            kind: 'user',
            subject: String(payload.sub),
            name: String(payload.email ?? payload.sub),
            email: String(payload.email ?? ''),
            org: typeof payload.org === 'string' ? payload.org : undefined,
            roles,
            ...(payload.email_verified === true && { emailVerified: true }),
            expiresAt: (payload.exp ?? 0) * 1000,
          };
        } catch (e) {
          throw new PollenError('UNAUTHENTICATED', 'The access token is not valid', { cause: e });
        }
      },
    },
  };
}
