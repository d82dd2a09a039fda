import { describe, expect, it } from 'vitest';
import { claimMapper, parseClaimPath } from './claims.js';
import type { ClaimMapping } from './identity.js';
import { keycloakClaimMapping, parseOidcConfig } from './oidc-config.js';

describe('parseClaimPath', () => {
  it('reads dotted names, and bracketed JSON strings for names with dots or slashes', () => {
    expect(parseClaimPath('realm_access.roles')).toEqual(['realm_access', 'roles']);
    expect(parseClaimPath('resource_access["pollen.superlink"].roles')).toEqual([
      'resource_access',
      'pollen.superlink',
      'roles',
    ]);
    expect(parseClaimPath('["https://pollen.example.org/roles"]')).toEqual([
      'https://pollen.example.org/roles',
    ]);
    expect(parseClaimPath('a.["b\\"c"].d')).toEqual(['a', 'b"c', 'd']);
    expect(parseClaimPath('groups')).toEqual(['groups']);
  });

  it('says what is wrong with a path it cannot read', () => {
    for (const bad of ['', 'a.', 'a..b', '.a', 'a b', 'a[b]', '["x"', '[""]', 'a["x"]b', '["x"]]'])
      expect(typeof parseClaimPath(bad), bad).toBe('string');
    expect(parseClaimPath('a..b')).toBe('"a..b": expected a claim name at character 3');
    expect(parseClaimPath('a[b]')).toBe(
      '"a[b]": write a bracketed name as a JSON string, e.g. ["pollen.superlink"]',
    );
  });
});

const keycloak = (extra: Partial<ClaimMapping> = {}) =>
  claimMapper({
    ...keycloakClaimMapping({ audience: 'pollen.superlink', clientId: 'pollen-cli' }),
    ...extra,
  });

/** An access token's claims as Keycloak issues them (realm and client roles, groups, a custom org claim). */
const keycloakToken = (extra: Record<string, unknown> = {}) => ({
  iss: 'https://id.example.org/realms/pollen',
  sub: '4f6c1c9e-0000-4000-8000-000000000001',
  aud: ['pollen.superlink', 'account'],
  exp: 1_800_000_000,
  typ: 'Bearer',
  azp: 'pollen-cli',
  preferred_username: 'ada',
  email: 'ada@hospital-a.org',
  email_verified: true,
  realm_access: { roles: ['offline_access', 'uma_authorization', 'default-roles-pollen', 'member'] },
  resource_access: {
    'pollen.superlink': { roles: ['lead'] },
    account: { roles: ['manage-account', 'project_admin'] },
  },
  groups: ['/hospital-a', '/pollen/admins'],
  org: 'hospital-a',
  ...extra,
});

describe('claimMapper with the Keycloak-shaped default mapping', () => {
  it('reads realm roles, the client roles of Pollen’s clients, and the org claim', () => {
    expect(keycloak()(keycloakToken())).toEqual({
      kind: 'user',
      subject: '4f6c1c9e-0000-4000-8000-000000000001',
      name: 'ada@hospital-a.org',
      email: 'ada@hospital-a.org',
      emailVerified: true,
      org: 'hospital-a',
      // project_admin in the `account` client's roles is not read: only Pollen's clients count.
      roles: ['lead', 'member'],
      expiresAt: 1_800_000_000_000,
    });
  });

  it('calls an e-mail verified only where the token says email_verified: true', () => {
    const { email_verified: _, ...unsaid } = keycloakToken();
    expect(keycloak()(unsaid)).toMatchObject({ email: 'ada@hospital-a.org' });
    expect(keycloak()(unsaid).emailVerified).toBeUndefined();
    expect(keycloak()(keycloakToken({ email_verified: 'true' })).emailVerified).toBeUndefined();
  });

  it('maps provider role and group names through role-names, ignores the rest, and never widens', () => {
    const map = keycloak({
      roleNames: { '/pollen/admins': 'project_admin', 'pollen-org-admin': 'org_admin' },
    });
    expect(map(keycloakToken()).roles).toEqual(['project_admin', 'lead', 'member']);
    const plain = map(
      keycloakToken({
        realm_access: { roles: ['pollen-org-admin', 'admin', 'toString', '__proto__', 42] },
        resource_access: {},
        groups: ['/hospital-a'],
      }),
    );
    expect(plain.roles).toEqual(['org_admin']);
    // Claims of the wrong shape count as absent.
    expect(
      map(keycloakToken({ realm_access: 'project_admin', resource_access: null, groups: {} })).roles,
    ).toEqual([]);
    expect(
      map(keycloakToken({ realm_access: { roles: 'member' }, resource_access: {}, groups: [] })).roles,
    ).toEqual(['member']);
  });

  it('reads the organisation from a name, a one-name list, Keycloak’s organization map, or group paths', () => {
    expect(keycloak()(keycloakToken({ org: ['hospital-b'] })).org).toBe('hospital-b');
    expect(
      keycloak({ org: 'organization' })(keycloakToken({ organization: { 'hospital-c': { id: 'x' } } })).org,
    ).toBe('hospital-c');
    const fromGroups = keycloak({ orgFromGroups: { claim: 'groups', prefix: '/orgs/' } });
    expect(
      fromGroups(keycloakToken({ org: undefined, groups: ['/orgs/hospital-d/leads', '/other'] })).org,
    ).toBe('hospital-d');
    // The claim and a group agreeing is one organisation.
    expect(fromGroups(keycloakToken({ org: 'hospital-d', groups: ['/orgs/hospital-d'] })).org).toBe(
      'hospital-d',
    );
    expect(keycloak()(keycloakToken({ org: undefined })).org).toBeUndefined();
    expect(keycloak()(keycloakToken({ org: '' })).org).toBeUndefined();
  });

  it('refuses a token that names two organisations rather than pick one', () => {
    const fromGroups = keycloak({ orgFromGroups: { claim: 'groups', prefix: '/orgs/' } });
    for (const claims of [
      keycloakToken({ org: ['hospital-a', 'hospital-b'] }),
      keycloakToken({ org: 'hospital-a', groups: ['/orgs/hospital-b'] }),
    ])
      expect(() => fromGroups(claims)).toThrow(
        expect.objectContaining({
          code: 'ACCESS_TOKEN_CLAIMS_INVALID',
          message:
            'The access token names 2 organisations (hospital-a, hospital-b); Pollen needs exactly one',
        }),
      );
  });

  it('names the person by e-mail, then preferred_username, then subject; an unverified e-mail is not used', () => {
    const map = keycloak();
    expect(map(keycloakToken({ email_verified: false }))).toMatchObject({ name: 'ada' });
    expect(map(keycloakToken({ email_verified: false })).email).toBeUndefined();
    expect(map(keycloakToken({ email: undefined, preferred_username: undefined })).name).toBe(
      '4f6c1c9e-0000-4000-8000-000000000001',
    );
    expect(keycloak({ name: 'preferred_username' })(keycloakToken()).name).toBe('ada');
  });

  it('reads custom claims under URL names (Auth0-style namespaced claims)', () => {
    const map = claimMapper({
      roles: ['["https://pollen.example.org/roles"]'],
      roleNames: { researcher: 'lead' },
      org: '["https://pollen.example.org/org"]',
      email: 'email',
      name: 'email',
    });
    const who = map({
      sub: 'auth0|1',
      'https://pollen.example.org/roles': ['researcher', 'viewer'],
      'https://pollen.example.org/org': 'hospital-a',
    });
    expect(who).toMatchObject({ subject: 'auth0|1', name: 'auth0|1', roles: ['lead'], org: 'hospital-a' });
  });

  it('refuses claims without a subject', () => {
    expect(() => keycloak()(keycloakToken({ sub: '' }))).toThrow(
      expect.objectContaining({ code: 'ACCESS_TOKEN_MALFORMED' }),
    );
  });
});

describe('parseOidcConfig', () => {
  const base = {
    issuer: 'https://id.example.org/realms/pollen',
    audience: 'pollen',
    'client-id': 'pollen-cli',
  };

  it('fills in the defaults: Keycloak-shaped claims, asymmetric algorithms, 60 s of skew', () => {
    expect(parseOidcConfig(base)).toEqual({
      issuer: 'https://id.example.org/realms/pollen',
      audience: 'pollen',
      clientId: 'pollen-cli',
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'],
      clockSkewSeconds: 60,
      claims: {
        roles: [
          'realm_access.roles',
          'resource_access.pollen.roles',
          'resource_access.pollen-cli.roles',
          'groups',
        ],
        roleNames: {},
        org: 'org',
        email: 'email',
        name: 'email',
      },
    });
  });

  it('takes every key as written in TOML', () => {
    const c = parseOidcConfig({
      ...base,
      audience: 'pollen.superlink',
      scopes: ['openid'],
      algorithms: ['ES256'],
      'clock-skew-seconds': 0,
      claims: {
        roles: ['roles'],
        'role-names': { 'pollen-admins': 'project_admin' },
        org: 'organization',
        'org-from-groups': { claim: 'groups', prefix: '/orgs/' },
        email: 'mail',
        name: 'preferred_username',
      },
    });
    expect(c.claims).toEqual({
      roles: ['roles'],
      roleNames: { 'pollen-admins': 'project_admin' },
      org: 'organization',
      orgFromGroups: { claim: 'groups', prefix: '/orgs/' },
      email: 'mail',
      name: 'preferred_username',
    });
    expect(parseOidcConfig({ ...base, audience: 'pollen.superlink' }).claims.roles[1]).toBe(
      'resource_access["pollen.superlink"].roles',
    );
    expect(parseOidcConfig({ ...base, issuer: 'http://127.0.0.1:8080/realms/pollen' }).issuer).toBe(
      'http://127.0.0.1:8080/realms/pollen',
    );
  });

  it('refuses bad values with CONFIG_INVALID naming each key', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ issuer: 'http://id.example.org/realms/pollen' }, 'issuer: must be an https:// URL'],
      [{ issuer: 'https://user:pw@id.example.org' }, 'issuer: must be an https:// URL'],
      [{ audience: '' }, 'audience: must not be empty'],
      [{ algorithms: ['HS256'] }, 'algorithms.0: HS256 is refused: only asymmetric algorithms'],
      [{ algorithms: ['none'] }, 'algorithms.0: none is refused'],
      [{ algorithms: ['RS1'] }, 'algorithms.0: RS1 is not a JWS algorithm Pollen accepts'],
      [{ algorithms: [] }, 'algorithms: must list at least one algorithm'],
      [{ 'clock-skew-seconds': 301 }, 'clock-skew-seconds: must be at most 300'],
      [{ 'clock-skew-seconds': 1.5 }, 'clock-skew-seconds: must be a whole number'],
      [{ claims: { roles: ['a..b'] } }, 'claims.roles.0: "a..b": expected a claim name'],
      [
        { claims: { 'role-names': { admins: 'superuser' } } },
        'claims.role-names.admins: maps to "superuser"',
      ],
      [
        { claims: { 'role-names': { member: 'project_admin' } } },
        '"member" is a Pollen role and always maps to itself',
      ],
      [
        { claims: { 'org-from-groups': { claim: 'groups', prefix: 'orgs' } } },
        'prefix: must start and end with /',
      ],
      [{ issuers: 'x' }, 'Unrecognized key'],
    ];
    for (const [patch, message] of cases) {
      let error: unknown;
      try {
        parseOidcConfig({ ...base, ...patch }, 'superlink.toml');
      } catch (e) {
        error = e;
      }
      expect(error, message).toMatchObject({ code: 'CONFIG_INVALID' });
      expect((error as Error).message).toContain('Invalid OIDC settings in superlink.toml: ');
      expect((error as Error).message).toContain(message);
    }
  });
});
