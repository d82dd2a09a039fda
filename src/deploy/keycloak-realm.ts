/**
 * The Keycloak realm a Pollen project imports (`deploy/keycloak/realm.json`, written by
 * `scripts/gen-keycloak-realm.ts`), and the `[identity.oidc]` section that reads its tokens
 * (`deploy/keycloak/identity.toml`). One source for both, so the realm and the claim mapping
 * cannot disagree:
 *
 * - realm roles named after Pollen's roles, given through groups (`/pollen/leads` → `lead`, …):
 *   Keycloak puts a member's effective realm roles in `realm_access.roles`;
 * - `pollen-cli`, the public client of `pollen login` (device authorization grant, refresh
 *   tokens), `pollen-dashboard`, the public client of the web dashboard (authorization code
 *   with PKCE S256, its redirect URIs), and `jupyterhub`, JupyterHub's confidential client
 *   (authorization code; Keycloak makes its secret on import, so the export holds none);
 * - the client scope `pollen`, default on both: Audience mappers that put the SuperLink and the
 *   Certificate Service in `aud`, a Group Membership mapper (`groups`, full paths) and a User
 *   Attribute mapper from the attribute `org` to the claim `org`;
 * - the user profile: `org` is an attribute a person can see and only an administrator can set.
 */
import type ComponentExportRepresentation from '@keycloak/keycloak-admin-client/lib/defs/componentExportRepresentation.js';
import type ProtocolMapperRepresentation from '@keycloak/keycloak-admin-client/lib/defs/protocolMapperRepresentation.js';
import type RealmRepresentation from '@keycloak/keycloak-admin-client/lib/defs/realmRepresentation.js';
import { ROLES, type Role } from '../identity/identity.js';

/**
 * A realm export as `kc.sh export` writes it and `kc.sh import` reads it. The admin client types
 * `components` as one component per type with one value per setting, while exports hold a list
 * of components per type and a list of values per setting: only that field differs here,
 * everything else is checked against the admin client's `RealmRepresentation`.
 */
export type RealmExport = Omit<RealmRepresentation, 'components'> & {
  components?: Record<
    string,
    (Omit<ComponentExportRepresentation, 'config'> & { config?: Record<string, string[]> })[]
  >;
};

export interface KeycloakRealmOptions {
  /** The realm's name (in the issuer: https://ID-HOST/realms/NAME). */
  realm: string;
  /** The SuperLink's audience: what its `[identity.oidc] audience` names. */
  superlinkAudience: string;
  /** The Certificate Service's audience, for `--login` on its admin commands. */
  certServiceAudience: string;
  /** Where the web dashboard is served (the Control API's https origin). */
  dashboardOrigin: string;
  /** Where researchers reach JupyterHub (its https origin). */
  jupyterhubOrigin: string;
}

export const SAMPLE_REALM: KeycloakRealmOptions = {
  realm: 'pollen',
  superlinkAudience: 'https://superlink.example.org:9093',
  certServiceAudience: 'https://certs.example.org:8443',
  dashboardOrigin: 'https://superlink.example.org:9093',
  jupyterhubOrigin: 'https://jupyter.example.org',
};

export const CLI_CLIENT = 'pollen-cli';
export const DASHBOARD_CLIENT = 'pollen-dashboard';
export const JUPYTERHUB_CLIENT = 'jupyterhub';
/** The user attribute, and the claim, that holds a person's organisation. */
export const ORG_ATTRIBUTE = 'org';

/** The group whose members hold each role: /pollen/project-admins … /pollen/members. */
export const ROLE_GROUPS: Record<Role, string> = {
  project_admin: 'project-admins',
  org_admin: 'org-admins',
  lead: 'leads',
  member: 'members',
};

const ROLE_DESCRIPTIONS: Record<Role, string> = {
  project_admin: 'Pollen: everything, in every organisation',
  org_admin: "Pollen: their organisation's nodes, enrollments and service accounts",
  lead: 'Pollen: submits runs and stops their own',
  member: 'Pollen: views runs and logs',
};

const inAccessToken = { 'access.token.claim': 'true', 'introspection.token.claim': 'true' };

function audience(name: string, value: string): ProtocolMapperRepresentation {
  return {
    name,
    protocol: 'openid-connect',
    protocolMapper: 'oidc-audience-mapper',
    config: { 'included.custom.audience': value, 'id.token.claim': 'false', ...inAccessToken },
  };
}

/** A Keycloak message key (`${username}`), shown in the person's language. */
const message = (key: string) => `\${${key}}`;

/** Keycloak's declarative user profile, with `org` that only administrators may set. */
function userProfile(): string {
  const person = { roles: ['user'] };
  return JSON.stringify({
    attributes: [
      {
        name: 'username',
        displayName: message('username'),
        validations: { length: { min: 3, max: 255 }, 'username-prohibited-characters': {} },
        permissions: { view: ['admin', 'user'], edit: ['admin', 'user'] },
        multivalued: false,
      },
      {
        name: 'email',
        displayName: message('email'),
        validations: { email: {}, length: { max: 255 } },
        required: person,
        permissions: { view: ['admin', 'user'], edit: ['admin', 'user'] },
        multivalued: false,
      },
      {
        name: 'firstName',
        displayName: message('firstName'),
        validations: { length: { max: 255 } },
        permissions: { view: ['admin', 'user'], edit: ['admin', 'user'] },
        multivalued: false,
      },
      {
        name: 'lastName',
        displayName: message('lastName'),
        validations: { length: { max: 255 } },
        permissions: { view: ['admin', 'user'], edit: ['admin', 'user'] },
        multivalued: false,
      },
      {
        name: ORG_ATTRIBUTE,
        displayName: 'Organisation',
        // People see their organisation; only an administrator sets it: an organisation-scoped
        // right must never follow from what a person typed about themselves.
        validations: { length: { min: 1, max: 128 } },
        permissions: { view: ['admin', 'user'], edit: ['admin'] },
        multivalued: false,
      },
    ],
    groups: [
      {
        name: 'user-metadata',
        displayHeader: 'User metadata',
        displayDescription: 'Attributes, which refer to user metadata',
      },
    ],
    unmanagedAttributePolicy: 'ADMIN_VIEW',
  });
}

/** The realm export. */
export function keycloakRealm(o: KeycloakRealmOptions): RealmExport {
  return {
    realm: o.realm,
    displayName: 'Pollen',
    enabled: true,
    sslRequired: 'external',
    // Refresh tokens are rotated: each is good for one use (`pollen login` keeps the newest).
    revokeRefreshToken: true,
    refreshTokenMaxReuse: 0,
    accessTokenLifespan: 300,
    oauth2DeviceCodeLifespan: 600,
    oauth2DevicePollingInterval: 5,
    defaultSignatureAlgorithm: 'RS256',
    roles: {
      realm: ROLES.map((name) => ({ name, description: ROLE_DESCRIPTIONS[name] })),
    },
    groups: [
      {
        name: 'pollen',
        path: '/pollen',
        subGroups: ROLES.map((role) => ({
          name: ROLE_GROUPS[role],
          path: `/pollen/${ROLE_GROUPS[role]}`,
          realmRoles: [role],
        })),
      },
    ],
    clientScopes: [
      {
        name: 'pollen',
        description: "What Pollen's services read: their audiences, groups and the organisation",
        protocol: 'openid-connect',
        attributes: { 'include.in.token.scope': 'true', 'display.on.consent.screen': 'false' },
        protocolMappers: [
          audience('audience: SuperLink', o.superlinkAudience),
          audience('audience: Certificate Service', o.certServiceAudience),
          {
            name: 'groups',
            protocol: 'openid-connect',
            protocolMapper: 'oidc-group-membership-mapper',
            config: {
              'claim.name': 'groups',
              'full.path': 'true',
              'id.token.claim': 'true',
              ...inAccessToken,
            },
          },
          {
            name: 'organisation',
            protocol: 'openid-connect',
            protocolMapper: 'oidc-usermodel-attribute-mapper',
            config: {
              'user.attribute': ORG_ATTRIBUTE,
              'claim.name': ORG_ATTRIBUTE,
              'jsonType.label': 'String',
              'id.token.claim': 'true',
              'userinfo.token.claim': 'true',
              ...inAccessToken,
            },
          },
        ],
      },
    ],
    clients: [
      {
        clientId: CLI_CLIENT,
        name: 'Pollen CLI',
        description: '`pollen login`: the device authorization grant (RFC 8628), no secret',
        enabled: true,
        publicClient: true,
        standardFlowEnabled: false,
        implicitFlowEnabled: false,
        directAccessGrantsEnabled: false,
        serviceAccountsEnabled: false,
        protocol: 'openid-connect',
        attributes: { 'oauth2.device.authorization.grant.enabled': 'true' },
        defaultClientScopes: ['pollen', 'roles', 'profile', 'email', 'basic'],
        optionalClientScopes: ['offline_access'],
      },
      {
        clientId: DASHBOARD_CLIENT,
        name: 'Pollen dashboard',
        description: 'The web dashboard: authorization code with PKCE (S256), no secret',
        enabled: true,
        publicClient: true,
        standardFlowEnabled: true,
        implicitFlowEnabled: false,
        directAccessGrantsEnabled: false,
        serviceAccountsEnabled: false,
        protocol: 'openid-connect',
        rootUrl: o.dashboardOrigin,
        redirectUris: [`${o.dashboardOrigin}/auth/callback`],
        webOrigins: [o.dashboardOrigin],
        attributes: {
          'pkce.code.challenge.method': 'S256',
          'post.logout.redirect.uris': `${o.dashboardOrigin}/`,
          'oauth2.device.authorization.grant.enabled': 'false',
        },
        defaultClientScopes: ['pollen', 'roles', 'profile', 'email', 'basic'],
      },
      {
        clientId: JUPYTERHUB_CLIENT,
        name: 'JupyterHub',
        description:
          "Researchers' notebooks: authorization code, confidential (the secret is made on import and given to the hub)",
        enabled: true,
        publicClient: false,
        clientAuthenticatorType: 'client-secret',
        standardFlowEnabled: true,
        implicitFlowEnabled: false,
        directAccessGrantsEnabled: false,
        serviceAccountsEnabled: false,
        protocol: 'openid-connect',
        rootUrl: o.jupyterhubOrigin,
        redirectUris: [`${o.jupyterhubOrigin}/hub/oauth_callback`],
        attributes: {
          'post.logout.redirect.uris': `${o.jupyterhubOrigin}/`,
          'oauth2.device.authorization.grant.enabled': 'false',
        },
        // The groups claim (/pollen/leads, …) decides who may use the hub.
        defaultClientScopes: ['pollen', 'roles', 'profile', 'email', 'basic'],
      },
    ],
    components: {
      'org.keycloak.userprofile.UserProfileProvider': [
        {
          providerId: 'declarative-user-profile',
          subComponents: {},
          config: { 'kc.user.profile.config': [userProfile()] },
        },
      ],
    },
  };
}

/**
 * The `[identity.oidc]` section of a SuperLink (and, with its own audience, of a Certificate
 * Service) that accepts this realm's tokens: roles from Pollen's defaults for Keycloak (realm
 * roles, the clients' roles, groups), the organisation from `org`.
 */
export function keycloakIdentityToml(o: KeycloakRealmOptions, idHost = 'https://id.example.org'): string {
  return [
    "# The SuperLink's identity provider: the Keycloak realm of deploy/keycloak/realm.json",
    '# (docs/identity.md). On the Certificate Service, set audience to its own:',
    `#   audience = ${JSON.stringify(o.certServiceAudience)}`,
    '[identity.oidc]',
    `issuer = ${JSON.stringify(`${idHost}/realms/${o.realm}`)}`,
    `audience = ${JSON.stringify(o.superlinkAudience)}`,
    `client-id = ${JSON.stringify(CLI_CLIENT)}`,
    '',
    '[identity.oidc.claims]',
    "# roles: the defaults (realm_access.roles, the clients' roles, groups)",
    `org = ${JSON.stringify(ORG_ATTRIBUTE)}`,
    '',
  ].join('\n');
}
