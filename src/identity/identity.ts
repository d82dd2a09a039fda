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
