/**
 * An embedded OpenID Provider (`oidc-provider`, certified) on 127.0.0.1: what `pollen demo --oidc`
 * logs its researcher in with, and what the tests drive `pollen login` against. Device flow on,
 * ES256 signing, JWT access tokens whose `aud` is the SuperLink (the resource indicator), refresh
 * tokens, revocation, and access tokens that carry Keycloak-shaped claims (`realm_access.roles`,
 * `resource_access.CLIENT.roles`, `groups`) and an organisation claim from a small user table.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type {
  Adapter,
  AdapterPayload,
  Configuration,
  KoaContextWithOIDC,
  default as Provider,
} from 'oidc-provider';

export interface ProviderUser {
  /** The account id: the token's `sub`, and the login name on the provider's form. */
  sub: string;
  email: string;
  /** The provider's `email_verified` claim (left out unless set). */
  emailVerified?: boolean;
  name: string;
  org?: string;
  /** Keycloak's `realm_access.roles`. */
  realmRoles?: string[];
  /** Keycloak's `resource_access.CLIENT_ID.roles`. */
  clientRoles?: string[];
  groups?: string[];
}

export interface EmbeddedProviderOptions {
  /** The `aud` of access tokens: the SuperLink (its default resource indicator). */
  audience: string;
  users: ProviderUser[];
  /**
   * Further audiences every access token names beside `audience` (as Keycloak's audience mappers
   * add them): a Certificate Service that accepts the same login.
   */
  extraAudiences?: string[];
  /** The public client `pollen login` uses (default `pollen-cli`). */
  clientId?: string;
  /** Lifetimes in seconds (defaults: access 600, refresh 86,400, device code 600). */
  accessTokenTtl?: number;
  refreshTokenTtl?: number;
  deviceCodeTtl?: number;
  /** The claim that carries the organisation (default `org`). */
  orgClaim?: string;
  /** Signing key (a private ES256 JWK with its `kid`); a fresh one by default. */
  signingKey?: JWK;
  port?: number;
}

export interface EmbeddedProvider {
  /** http://127.0.0.1:PORT */
  issuer: string;
  clientId: string;
  audience: string;
  /** The public signing key (JWKS member). */
  publicKey: JWK;
  /** The running provider (tests add middleware with `provider.use`). */
  provider: Provider;
  close(): Promise<void>;
}

export const DEFAULT_CLIENT_ID = 'pollen-cli';
/** What the SuperLink's resource server grants; `pollen login` asks for it beside the OIDC scopes. */
const RESOURCE_SCOPE = 'pollen';

const QUIET = [
  /^oidc-provider WARNING: Unsupported runtime/,
  /^oidc-provider WARNING: a quick start development-only feature devInteractions/,
];

/**
 * oidc-provider prints two warnings that say nothing to our users: "Unsupported runtime" on
 * import (it asks for Node 22; it works on Node 20, checked by the tests that drive it) and the
 * devInteractions notice (the provider only ever listens on loopback for a demo or a test). Drop
 * just those lines while `fn` runs; everything else it prints still goes through.
 */
async function withoutKnownWarnings<T>(fn: () => Promise<T>): Promise<T> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && QUIET.some((q) => q.test(args[0] as string))) return;
    warn(...args);
  };
  try {
    return await fn();
  } finally {
    console.warn = warn;
  }
}

/** Start the provider on 127.0.0.1 (a free port unless `port`). */
export async function startEmbeddedProvider(o: EmbeddedProviderOptions): Promise<EmbeddedProvider> {
  const clientId = o.clientId ?? DEFAULT_CLIENT_ID;
  const orgClaim = o.orgClaim ?? 'org';
  const users = new Map(o.users.map((u) => [u.sub, u]));
  const signingKey = o.signingKey ?? (await freshSigningKey());
  const { d: _private, ...publicKey } = signingKey;
  const accessTokenTtl = o.accessTokenTtl ?? 600;

  const claimsOf = (u: ProviderUser): Record<string, unknown> => ({
    email: u.email,
    ...(u.emailVerified !== undefined && { email_verified: u.emailVerified }),
    name: u.name,
    ...(u.org !== undefined && { [orgClaim]: u.org }),
    realm_access: { roles: u.realmRoles ?? [] },
    resource_access: { [clientId]: { roles: u.clientRoles ?? [] } },
    groups: u.groups ?? [],
  });

  const configuration: Configuration = {
    clients: [
      {
        client_id: clientId,
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [signingKey as never] },
    enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
    scopes: ['openid', 'offline_access', 'profile', 'email', RESOURCE_SCOPE],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', orgClaim] },
    async findAccount(_ctx, sub) {
      const u = users.get(sub);
      if (!u) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...claimsOf(u) }) };
    },
    async extraTokenClaims(_ctx, token) {
      const u = 'accountId' in token ? users.get(token.accountId as string) : undefined;
      return u ? claimsOf(u) : undefined;
    },
    // Every device grant of the CLI's client gets a refresh token (no `offline_access` dance).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: {
      devInteractions: { enabled: true },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: (ctx, form) =>
          page(
            ctx,
            'Sign in to Pollen',
            `<p>Enter the code the CLI shows.</p>${form}<button type="submit" form="op.deviceInputForm">Continue</button>`,
          ),
        userCodeConfirmSource: (ctx, form, _client, _device, userCode) =>
          page(
            ctx,
            'Sign in to Pollen',
            `<p>Does the CLI show <code>${escapeHtml(userCode)}</code>?</p>${form}<button type="submit" form="op.deviceConfirmForm">Continue</button> <button type="submit" form="op.deviceConfirmForm" value="yes" name="abort">Abort</button>`,
          ),
        successSource: (ctx) => page(ctx, 'Signed in', '<p>You are signed in: go back to the terminal.</p>'),
      },
      // A public client revokes its own tokens (RFC 7009); the provider checks they are its.
      revocation: { enabled: true, allowedPolicy: async () => true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => o.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== o.audience) throw new Error(`unknown resource ${resource}`);
          return {
            scope: RESOURCE_SCOPE,
            audience: o.audience,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    ttl: {
      AccessToken: accessTokenTtl,
      RefreshToken: o.refreshTokenTtl ?? 86_400,
      DeviceCode: o.deviceCodeTtl ?? 600,
      Grant: 86_400,
      IdToken: 3_600,
      Interaction: 3_600,
      Session: 86_400,
    },
    ...(o.extraAudiences?.length && {
      formats: {
        customizers: {
          async jwt(_ctx, _token, jwt) {
            jwt.payload.aud = [o.audience, ...o.extraAudiences!];
          },
        },
      },
    }),
    adapter: memoryAdapter(),
    // A loopback provider for a demo or a test: no cookie keys to keep.
    cookies: { keys: [crypto.randomUUID()] },
    renderError: (ctx: KoaContextWithOIDC, out) =>
      page(
        ctx,
        'Error',
        `<p class="error">${escapeHtml(String(out.error))}: ${escapeHtml(String(out.error_description ?? ''))}</p>`,
      ),
  };

  return withoutKnownWarnings(async () => {
    const { default: Provider } = await import('oidc-provider');
    const server = await listen(o.port ?? 0);
    const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const provider = new Provider(issuer, configuration);
    server.on('request', provider.callback());
    return {
      issuer,
      clientId,
      audience: o.audience,
      publicKey: publicKey as JWK,
      provider,
      close: () =>
        new Promise<void>((res) => {
          server.closeAllConnections();
          server.close(() => res());
        }),
    };
  });
}

/**
 * The provider's state in this process's memory: codes, grants and tokens of a demo or a test,
 * gone with it. (Its own memory adapter works the same but announces itself on every start.)
 */
function memoryAdapter(): (model: string) => Adapter {
  const rows = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const grants = new Map<string, Set<string>>();
  const live = (key: string) => {
    const row = rows.get(key);
    if (row && row.expiresAt <= Date.now()) rows.delete(key);
    return rows.get(key)?.payload;
  };
  return (model) => {
    const key = (id: string) => `${model}:${id}`;
    const findBy = (field: 'userCode' | 'uid', value: string) => {
      for (const [k, row] of rows)
        if (k.startsWith(`${model}:`) && row.payload[field] === value) return live(k);
      return undefined;
    };
    return {
      async upsert(id, payload, expiresIn) {
        rows.set(key(id), { payload, expiresAt: Date.now() + (expiresIn ?? 3600) * 1000 });
        if (payload.grantId) {
          const set = grants.get(payload.grantId) ?? new Set<string>();
          set.add(key(id));
          grants.set(payload.grantId, set);
        }
      },
      find: async (id) => live(key(id)),
      findByUserCode: async (userCode) => findBy('userCode', userCode),
      findByUid: async (uid) => findBy('uid', uid),
      async consume(id) {
        const row = live(key(id));
        if (row) row.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        rows.delete(key(id));
      },
      async revokeByGrantId(grantId) {
        for (const k of grants.get(grantId) ?? []) rows.delete(k);
        grants.delete(grantId);
      },
    };
  };
}

export async function freshSigningKey(kid = crypto.randomUUID()): Promise<JWK> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
}

async function listen(port: number): Promise<Server> {
  const { createServer } = await import('node:http');
  const server = createServer();
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(port, '127.0.0.1', () => res());
  });
  return server;
}

function page(ctx: KoaContextWithOIDC, title: string, body: string): void {
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
