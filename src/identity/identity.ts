/**
 * Who is calling. Every call to the Control API or the Certificate Service's admin API carries
 * exactly one identity; each kind has exactly one source of roles and organisation, so no source
 * can widen another:
 * - `user`: a person logged in through OIDC — roles and organisation from the access token's
 *   claims, mapped by configuration (`claims.ts`);
 * - `certificate`: an admin certificate from the project CA — the role and `O=` in it;
 * - `service_account`: a pipeline's secret — the account's definition, stored by the service;
 * - `local`: a development SuperLink without TLS — every caller is a project admin.
 */

/** The roles, widest first (FLARE's project roles). */
export const ROLES = ['project_admin', 'org_admin', 'lead', 'member'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}

export type IdentityKind = 'user' | 'certificate' | 'service_account' | 'local';

export interface Identity {
  kind: IdentityKind;
  /** Stable and unique per kind: the token's `sub`, the certificate name, the account name. */
  subject: string;
  /** Recorded on every change and shown to people: an e-mail, a certificate name, `sa:NAME`. */
  name: string;
  /** The organisation; undefined only where none is known (then no org-scoped right applies). */
  org: string | undefined;
  roles: Role[];
  email?: string;
  /** True only where the identity provider says it verified `email` (`email_verified`): an invitation by e-mail needs it. */
  emailVerified?: boolean;
  /** When the credential stops being valid (epoch ms), where it has an end. */
  expiresAt?: number;
}

/** The identity of every caller of a SuperLink that runs without TLS (development only). */
export const LOCAL_ADMIN: Identity = {
  kind: 'local',
  subject: 'local',
  name: 'local',
  org: undefined,
  roles: ['project_admin'],
};

/** Checks an OIDC access token and maps its claims (`token-verifier.ts`). */
export interface TokenVerifier {
  verify(token: string): Promise<Identity>;
}

/** Service-account secrets are bearer tokens with this prefix, so they are never taken for a JWT. */
export const SERVICE_ACCOUNT_PREFIX = 'pollen_sa_';

/** Authenticates a service-account secret (`service-accounts.ts`). */
export interface ServiceAccountAuth {
  authenticate(secret: string): Promise<Identity>;
}

/** Where a token's claims hold roles, organisation and e-mail (docs/identity.md). */
export interface ClaimMapping {
  /** Dotted claim paths holding role names: `realm_access.roles`, `resource_access.pollen.roles`, `groups`. */
  roles: string[];
  /** An identity provider's role or group name → a Pollen role (Pollen's own names map to themselves). */
  roleNames: Record<string, Role>;
  /** Dotted claim path of the organisation (`org`, `organization`, a custom claim). */
  org: string;
  /** Organisations from group paths too: `{ claim: 'groups', prefix: '/orgs/' }` reads `/orgs/NAME…` as NAME. */
  orgFromGroups?: { claim: string; prefix: string };
  email: string;
  name: string;
}

/** A SuperLink's or Certificate Service's OpenID Provider: which tokens it accepts and how it reads them. */
export interface OidcConfig {
  issuer: string;
  /** The `aud` access tokens must name: this service. */
  audience: string;
  /** The public client `pollen login` uses (device authorization grant). */
  clientId: string;
  scopes: string[];
  /** Asymmetric JWS algorithms only. */
  algorithms: string[];
  clockSkewSeconds: number;
  claims: ClaimMapping;
}
