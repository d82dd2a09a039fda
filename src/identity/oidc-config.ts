/**
 * The `[identity.oidc]` section of a service's configuration: which OpenID Provider's access
 * tokens it accepts and how it reads their claims. Keys are written kebab-case, as in every Pollen
 * TOML file; the result is an `OidcConfig`. Bad values fail with CONFIG_INVALID naming the key.
 */
import { z } from 'zod';
import { PollenError } from '../errors.js';
import { isLoopback } from '../transport/rpc-server.js';
import { parseClaimPath } from './claims.js';
import { type ClaimMapping, isRole, type OidcConfig, ROLES } from './identity.js';

/** Asymmetric JWS algorithms a service may accept; `none` and the HMAC family (HS*) never. */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;

/** Keycloak signs with RS256 by default; other providers often with ES256 or EdDSA. */
export const DEFAULT_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'];
export const DEFAULT_CLOCK_SKEW_SECONDS = 60;
/** A wider tolerance would keep expired tokens alive for minutes: fix the clocks instead. */
export const MAX_CLOCK_SKEW_SECONDS = 300;
export const DEFAULT_SCOPES = ['openid', 'profile', 'email', 'offline_access'];

/**
 * Where a Keycloak realm puts what Pollen reads: realm roles, the client roles of Pollen's own
 * clients (the audience and the login client), groups (only those `role-names` maps), the
 * organisation in a custom `org` claim (a user attribute with a token mapper).
 */
export function keycloakClaimMapping(o: { audience: string; clientId: string }): ClaimMapping {
  const clientRoles = [...new Set([o.audience, o.clientId])].map(
    (c) => `resource_access${quoteSegment(c)}.roles`,
  );
  return {
    roles: ['realm_access.roles', ...clientRoles, 'groups'],
    roleNames: {},
    org: 'org',
    email: 'email',
    name: 'email',
  };
}

/** `.name` for a plain segment, `["a.b"]` for one that holds a dot or other punctuation. */
function quoteSegment(s: string): string {
  return /^[A-Za-z0-9_-]+$/.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`;
}

/** An issuer or endpoint URL: https, or http on a loopback address (tests, demos). */
export function isAcceptableIssuerUrl(s: string): boolean {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return false;
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return (
    !u.username &&
    !u.password &&
    !u.search &&
    !u.hash &&
    (u.protocol === 'https:' || (u.protocol === 'http:' && isLoopback(host)))
  );
}

const nonEmpty = z.string().trim().min(1, 'must not be empty');

const claimPath = z.string().superRefine((s, ctx) => {
  const p = parseClaimPath(s);
  if (typeof p === 'string') ctx.addIssue({ code: 'custom', message: p });
});

const algorithm = z.string().superRefine((s, ctx) => {
  if ((ASYMMETRIC_ALGORITHMS as readonly string[]).includes(s)) return;
  const why =
    s === 'none' || s.startsWith('HS')
      ? `${s} is refused: only asymmetric algorithms prove that the identity provider signed a token`
      : `${s} is not a JWS algorithm Pollen accepts`;
  ctx.addIssue({ code: 'custom', message: `${why} (use ${ASYMMETRIC_ALGORITHMS.join(', ')})` });
});

const roleNames = z.record(z.string().min(1), z.string()).superRefine((m, ctx) => {
  for (const [from, to] of Object.entries(m)) {
    if (!isRole(to))
      ctx.addIssue({
        code: 'custom',
        path: [from],
        message: `maps to "${to}", which is not a Pollen role (${ROLES.join(', ')})`,
      });
    else if (isRole(from) && from !== to)
      ctx.addIssue({
        code: 'custom',
        path: [from],
        message: `"${from}" is a Pollen role and always maps to itself`,
      });
  }
});

const claimsSchema = z.strictObject({
  roles: z.array(claimPath).optional(),
  'role-names': roleNames.optional(),
  org: claimPath.optional(),
  'org-from-groups': z
    .strictObject({ claim: claimPath, prefix: z.string().regex(/^\/.*\/$/, 'must start and end with /') })
    .optional(),
  email: claimPath.optional(),
  name: claimPath.optional(),
});

const oidcSchema = z.strictObject({
  issuer: nonEmpty.refine(
    isAcceptableIssuerUrl,
    'must be an https:// URL (http:// only on a loopback address)',
  ),
  audience: nonEmpty,
  'client-id': nonEmpty,
  scopes: z.array(nonEmpty).optional(),
  algorithms: z.array(algorithm).min(1, 'must list at least one algorithm').optional(),
  'clock-skew-seconds': z
    .number()
    .int('must be a whole number')
    .min(0, 'must not be negative')
    .max(MAX_CLOCK_SKEW_SECONDS, `must be at most ${MAX_CLOCK_SKEW_SECONDS} (fix the clocks instead)`)
    .optional(),
  claims: claimsSchema.optional(),
});

/** The raw `[identity.oidc]` section, kebab-case as written in TOML. */
export type OidcConfigInput = z.input<typeof oidcSchema>;

/**
 * Validate the `[identity.oidc]` section and fill in the defaults (Keycloak-shaped claims;
 * `source` names the file in errors).
 *
 * @example
 * ```ts
 * const oidc = parseOidcConfig({ issuer: 'https://id.example.org/realms/pollen', audience: 'pollen', 'client-id': 'pollen-cli' });
 * ```
 */
export function parseOidcConfig(input: unknown, source = '[identity.oidc]'): OidcConfig {
  const parsed = oidcSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map(
      (i) => `${i.path.map(String).join('.') || '(section)'}: ${i.message}`,
    );
    throw new PollenError('CONFIG_INVALID', `Invalid OIDC settings in ${source}: ${issues.join('; ')}`, {
      hint: 'Fix the named key of [identity.oidc] (docs/identity.md lists each with its default).',
      data: { issues },
    });
  }
  const c = parsed.data;
  const defaults = keycloakClaimMapping({ audience: c.audience, clientId: c['client-id'] });
  const claims = c.claims ?? {};
  const fromGroups = claims['org-from-groups'];
  return {
    issuer: c.issuer,
    audience: c.audience,
    clientId: c['client-id'],
    scopes: c.scopes ?? DEFAULT_SCOPES,
    algorithms: [...new Set(c.algorithms ?? DEFAULT_ALGORITHMS)],
    clockSkewSeconds: c['clock-skew-seconds'] ?? DEFAULT_CLOCK_SKEW_SECONDS,
    claims: {
      roles: claims.roles ?? defaults.roles,
      // Checked above: every value is a role.
      roleNames: (claims['role-names'] ?? defaults.roleNames) as ClaimMapping['roleNames'],
      org: claims.org ?? defaults.org,
      ...(fromGroups && { orgFromGroups: fromGroups }),
      email: claims.email ?? defaults.email,
      name: claims.name ?? defaults.name,
    },
  };
}
