/**
 * From a verified access token's claims to a `user` identity, by the deployment's `ClaimMapping`
 * (docs/identity.md, "Claims and roles"). Reading is narrow by design: a role name nobody mapped
 * is ignored, a claim of the wrong shape counts as absent, and a token that names two
 * organisations is refused rather than given either.
 */
import { PollenError } from '../errors.js';
import { type ClaimMapping, type Identity, isRole, ROLES, type Role } from './identity.js';

/**
 * A claim path: names joined by dots (`realm_access.roles`); a name that holds a dot or other
 * punctuation is written in brackets as a JSON string: `resource_access["pollen.superlink"].roles`,
 * `["https://pollen.example.org/roles"]`. Returns the names, or a message saying what is wrong.
 */
export function parseClaimPath(path: string): string[] | string {
  const names: string[] = [];
  let i = 0;
  while (i < path.length) {
    if (path[i] === '[') {
      const quoted = /^\[("(?:[^"\\]|\\.)*")\]/.exec(path.slice(i));
      const name = quoted ? jsonString(quoted[1]!) : undefined;
      if (name === undefined)
        return `"${path}": write a bracketed name as a JSON string, e.g. ["pollen.superlink"]`;
      names.push(name);
      i += quoted![0].length;
    } else {
      const plain = /^[^.[\]"\s]+/.exec(path.slice(i));
      if (!plain) return `"${path}": expected a claim name at character ${i + 1}`;
      names.push(plain[0]);
      i += plain[0].length;
    }
    if (i === path.length) break;
    if (path[i] === '.') {
      if (++i === path.length) return `"${path}": ends with a dot`;
    } else if (path[i] !== '[') return `"${path}": expected "." or "[" at character ${i + 1}`;
  }
  return names.length > 0 ? names : 'a claim path must not be empty';
}

function jsonString(s: string): string | undefined {
  try {
    const v: unknown = JSON.parse(s);
    return typeof v === 'string' && v !== '' ? v : undefined;
  } catch {
    return undefined;
  }
}

function compilePath(path: string): string[] {
  const p = parseClaimPath(path);
  if (typeof p === 'string') throw new PollenError('CONFIG_INVALID', `Invalid claim path ${p}`);
  return p;
}

/** The value at a path; own properties only, so `__proto__` or `constructor` never resolve. */
function valueAt(claims: unknown, path: readonly string[]): unknown {
  let v = claims;
  for (const name of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, name)) return undefined;
    v = (v as Record<string, unknown>)[name];
  }
  return v;
}

/** The strings of a claim that holds a list of names or one name; anything else counts as none. */
function stringsAt(claims: unknown, path: readonly string[]): string[] {
  const v = valueAt(claims, path);
  if (typeof v === 'string') return [v];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** A string claim, or undefined when it is absent, empty or not a string. */
function stringAt(claims: unknown, path: readonly string[]): string | undefined {
  const v = valueAt(claims, path);
  return typeof v === 'string' && v !== '' ? v : undefined;
}

const MAX_ORG_LENGTH = 200;

/**
 * Turns verified claims into a `user` identity. Build it once per configuration (the paths are
 * parsed here) and call it per token.
 *
 * @example
 * ```ts
 * const toIdentity = claimMapper(config.claims);
 * const who = toIdentity(payload); // { kind: 'user', subject: payload.sub, roles: [...], org, ... }
 * ```
 */
export function claimMapper(mapping: ClaimMapping): (claims: Record<string, unknown>) => Identity {
  const rolePaths = mapping.roles.map(compilePath);
  const orgPath = compilePath(mapping.org);
  const emailPath = compilePath(mapping.email);
  const namePath = compilePath(mapping.name);
  const groups = mapping.orgFromGroups && {
    path: compilePath(mapping.orgFromGroups.claim),
    prefix: mapping.orgFromGroups.prefix,
  };
  const roleNames = mapping.roleNames;
  const nameIsEmail = JSON.stringify(namePath) === JSON.stringify(emailPath);

  const roleOf = (name: string): Role | undefined =>
    isRole(name) ? name : Object.hasOwn(roleNames, name) ? roleNames[name] : undefined;

  const orgsOf = (claims: Record<string, unknown>): Set<string> => {
    const found = new Set<string>();
    const v = valueAt(claims, orgPath);
    // A name, a list of names, or (Keycloak's organisations feature) a map keyed by name.
    const names =
      typeof v === 'string'
        ? [v]
        : Array.isArray(v)
          ? v
          : v !== null && typeof v === 'object'
            ? Object.keys(v)
            : [];
    for (const n of names) if (typeof n === 'string' && n.trim() !== '') found.add(n.trim());
    if (groups)
      for (const g of stringsAt(claims, groups.path))
        if (g.startsWith(groups.prefix)) {
          const org = g.slice(groups.prefix.length).split('/')[0];
          if (org) found.add(org);
        }
    return found;
  };

  return (claims) => {
    const subject = stringAt(claims, ['sub']);
    if (!subject) throw new PollenError('ACCESS_TOKEN_MALFORMED', 'The access token has no subject (sub)');
    const roles = new Set<Role>();
    for (const path of rolePaths)
      for (const name of stringsAt(claims, path)) {
        const role = roleOf(name);
        if (role) roles.add(role);
      }
    const orgs = orgsOf(claims);
    if (orgs.size > 1)
      throw new PollenError(
        'ACCESS_TOKEN_CLAIMS_INVALID',
        `The access token names ${orgs.size} organisations (${[...orgs].slice(0, 4).join(', ')}${orgs.size > 4 ? ', …' : ''}); Pollen needs exactly one`,
      );
    const org = [...orgs][0];
    if (org !== undefined && org.length > MAX_ORG_LENGTH)
      throw new PollenError(
        'ACCESS_TOKEN_CLAIMS_INVALID',
        `The organisation in the access token is longer than ${MAX_ORG_LENGTH} characters`,
      );
    // An address the provider marks unverified names nobody: it is neither shown nor recorded.
    const unverified = claims['email_verified'] === false;
    const email = unverified ? undefined : stringAt(claims, emailPath);
    const named = nameIsEmail ? email : stringAt(claims, namePath);
    const exp = claims['exp'];
    return {
      kind: 'user',
      subject,
      name: named ?? email ?? stringAt(claims, ['preferred_username']) ?? subject,
      org,
      roles: ROLES.filter((r) => roles.has(r)),
      ...(email !== undefined && { email }),
      ...(email !== undefined && claims['email_verified'] === true && { emailVerified: true }),
      ...(typeof exp === 'number' && { expiresAt: exp * 1000 }),
    };
  };
}
