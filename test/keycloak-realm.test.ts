/**
 * The Keycloak realm of deploy/keycloak/ is what its generator makes, has what a Pollen project
 * needs (the device-flow client, the dashboard's PKCE client, the audiences, the organisation
 * only admins set), and — with no Keycloak here — drives the embedded OpenID Provider configured
 * *from* the export: its login client, its audiences, its group → role mappings and claims. A
 * person logs in with the CLI (device flow) and the SuperLink, configured with
 * deploy/keycloak/identity.toml, maps the token to the roles and organisation the docs promise.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type ProtocolMapperRepresentation from '@keycloak/keycloak-admin-client/lib/defs/protocolMapperRepresentation.js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { realmFiles } from '../scripts/gen-keycloak-realm.js';
import { loginClock } from '../src/cli/login/clock.js';
import type { ProviderUser } from '../src/demo/oidc-provider.js';
import type { RealmExport } from '../src/deploy/keycloak-realm.js';
import { readOidcSection } from '../src/identity/service-identity.js';
import { createTokenVerifier } from '../src/identity/token-verifier.js';
import { pollenInProcess, tempDir } from './support/cli.js';
import { type InProcessLink, startInProcessLink } from './support/inproc.js';
import { cliLogin } from './support/login-control.js';
import { startTestProvider, type TestProvider } from './support/oidc-provider.js';

const DIR = join(import.meta.dirname, '..', 'deploy', 'keycloak');
// What an operator imports: the file itself, typed as a realm export.
const realm = JSON.parse(readFileSync(join(DIR, 'realm.json'), 'utf8')) as RealmExport;
const identityToml = readFileSync(join(DIR, 'identity.toml'), 'utf8');

const clients = realm.clients ?? [];
const deviceClient = clients.find(
  (c) => c.attributes?.['oauth2.device.authorization.grant.enabled'] === 'true',
);
/** The mappers of the client scopes the login client's tokens carry by default. */
const mappers: ProtocolMapperRepresentation[] = (realm.clientScopes ?? [])
  .filter((s) => deviceClient?.defaultClientScopes?.includes(s.name ?? ''))
  .flatMap((s) => s.protocolMappers ?? []);
const mapper = (type: string) => mappers.filter((m) => m.protocolMapper === type);
const userProfile = JSON.parse(
  realm.components?.['org.keycloak.userprofile.UserProfileProvider']?.[0]?.config?.[
    'kc.user.profile.config'
  ]?.[0] ?? '{}',
) as { attributes: { name: string; permissions?: { view?: string[]; edit?: string[] } }[] };

describe('deploy/keycloak', () => {
  it('is what scripts/gen-keycloak-realm.ts makes', () => {
    for (const [name, text] of Object.entries(realmFiles()))
      expect(
        readFileSync(join(DIR, name), 'utf8'),
        `${name}: run npx tsx scripts/gen-keycloak-realm.ts`,
      ).toBe(text);
  });

  it('has the roles, a device-flow client and a PKCE client for the dashboard', () => {
    expect(realm.roles?.realm?.map((r) => r.name)).toEqual(['project_admin', 'org_admin', 'lead', 'member']);
    expect(deviceClient).toMatchObject({
      clientId: 'pollen-cli',
      publicClient: true,
      standardFlowEnabled: false,
      directAccessGrantsEnabled: false,
    });
    expect(deviceClient?.defaultClientScopes).toContain('roles'); // realm_access.roles
    expect(deviceClient?.optionalClientScopes).toContain('offline_access'); // refresh tokens
    const dashboard = clients.find((c) => c.clientId === 'pollen-dashboard');
    expect(dashboard).toMatchObject({
      publicClient: true,
      standardFlowEnabled: true,
      implicitFlowEnabled: false,
      attributes: { 'pkce.code.challenge.method': 'S256' },
    });
    expect(dashboard?.redirectUris?.length).toBeGreaterThan(0);
    for (const uri of dashboard?.redirectUris ?? []) expect(uri).toMatch(/^https:\/\/[^*]+$/); // no wildcards
  });

  it("has JupyterHub's confidential client, whose secret Keycloak makes on import (none in the file)", () => {
    const hub = clients.find((c) => c.clientId === 'jupyterhub');
    expect(hub).toMatchObject({
      publicClient: false,
      clientAuthenticatorType: 'client-secret',
      standardFlowEnabled: true,
      implicitFlowEnabled: false,
      directAccessGrantsEnabled: false,
      redirectUris: ['https://jupyter.example.org/hub/oauth_callback'],
    });
    expect(hub?.secret).toBeUndefined();
    // The groups claim decides who may use the hub (deploy/jupyterhub/jupyterhub_config.py).
    expect(hub?.defaultClientScopes).toContain('pollen');
  });

  it('lets only administrators set the organisation, and names both services in the audience', () => {
    const orgMapper = mapper('oidc-usermodel-attribute-mapper')[0];
    const org = userProfile.attributes.find((a) => a.name === orgMapper?.config?.['user.attribute']);
    expect(org?.permissions).toEqual({ view: ['admin', 'user'], edit: ['admin'] });
    const audiences = mapper('oidc-audience-mapper').map((m) => m.config?.['included.custom.audience']);
    const superlink = /^audience = "(.+)"$/m.exec(identityToml)?.[1];
    const certService = /^# +audience = "(.+)"$/m.exec(identityToml)?.[1];
    expect(audiences).toEqual([superlink, certService]);
    expect(/^client-id = "(.+)"$/m.exec(identityToml)?.[1]).toBe(deviceClient?.clientId);
  });
});

/** People of the realm: a group each (its role comes from the group), an organisation attribute. */
const PEOPLE = [
  { sub: 'ana', email: 'ana@uni-a.example', name: 'Ana', org: 'uni-a', group: '/pollen/leads' },
  { sub: 'bo', email: 'bo@uni-b.example', name: 'Bo', org: 'uni-b', group: '/pollen/org-admins' },
];

/** A person's tokens as Keycloak makes them from the export: effective realm roles from groups. */
function asProviderUser(p: (typeof PEOPLE)[number]): ProviderUser {
  const [, parent, child] = p.group.split('/');
  const group = realm.groups?.find((g) => g.name === parent)?.subGroups?.find((g) => g.name === child);
  expect(group, p.group).toBeDefined();
  return {
    sub: p.sub,
    email: p.email,
    name: p.name,
    org: p.org,
    realmRoles: group?.realmRoles ?? [],
    clientRoles: group?.clientRoles?.[deviceClient?.clientId ?? ''] ?? [],
    groups:
      mapper('oidc-group-membership-mapper')[0]?.config?.['full.path'] === 'true' ? [p.group] : [child!],
  };
}

describe('logging in through the realm', () => {
  const t = tempDir('pollen-keycloak-');
  let provider: TestProvider;
  let link: InProcessLink;
  let config: string;

  beforeAll(async () => {
    const [first, ...more] = mapper('oidc-audience-mapper').map((m) =>
      String(m.config?.['included.custom.audience']),
    );
    const groupsClaim = mapper('oidc-group-membership-mapper')[0]?.config?.['claim.name'];
    expect(groupsClaim).toBe('groups'); // what the provider (and Keycloak's mapper here) names it
    provider = await startTestProvider({
      clientId: deviceClient?.clientId,
      audience: first!,
      extraAudiences: more,
      orgClaim: mapper('oidc-usermodel-attribute-mapper')[0]?.config?.['claim.name'],
      users: PEOPLE.map(asProviderUser),
    });
    // The SuperLink's [identity.oidc], as shipped, with this provider's issuer.
    const file = join(t.dir, 'identity.toml');
    writeFileSync(file, identityToml.replace(/^issuer = .*$/m, `issuer = "${provider.issuer}"`));
    const oidc = readOidcSection(file);
    link = await startInProcessLink('pollen-keycloak-link-', { oidc, tokens: createTokenVerifier(oidc) });
    const admin = await link.adminCert();
    config = join(t.dir, 'home', 'config.toml');
    const add = await pollenInProcess([
      'federation',
      'add',
      'lab',
      '--address',
      new URL(link.superlink.controlUrl).host,
      '--root-certificate',
      admin.rootPath,
      '--config',
      config,
    ]);
    expect(add.code, add.stderr).toBe(0);
  });
  afterAll(async () => {
    await link?.close();
    await provider?.close();
    t.cleanup();
  });
  beforeEach(() => {
    vi.spyOn(loginClock, 'sleep').mockImplementation(() => new Promise((r) => setTimeout(r, 5)));
  });
  afterEach(() => vi.restoreAllMocks());

  it.each([
    ['ana', { subject: 'ana', roles: ['lead'], org: 'uni-a' }],
    ['bo', { subject: 'bo', roles: ['org_admin'], org: 'uni-b' }],
  ])(
    '%s logs in with the device flow and the SuperLink reads the documented role and organisation',
    async (user, expected) => {
      const { r } = await cliLogin(config, ['lab'], { user });
      expect(r.code, r.stderr).toBe(0);
      const whoami = await pollenInProcess(['whoami', 'lab', '--config', config, '--json']);
      expect(whoami.code, whoami.stdout).toBe(0);
      expect(whoami.json<{ identity: unknown }>().identity).toMatchObject({ kind: 'user', ...expected });
    },
  );
});
