/**
 * A real OpenID Provider for tests (`oidc-provider`, src/demo/oidc-provider.ts) with users whose
 * access tokens look like Keycloak's, and the knobs tests need: short lifetimes, `slow_down`
 * answers, and a check of whether a refresh token still works at the provider.
 */
import * as oidc from 'openid-client';
import {
  type EmbeddedProvider,
  type EmbeddedProviderOptions,
  type ProviderUser,
  startEmbeddedProvider,
} from '../../src/demo/oidc-provider.js';

export { actAsDeviceUser } from '../../src/demo/device-user.js';

/** Keycloak-shaped people of two organisations. */
export const TEST_USERS: ProviderUser[] = [
  {
    sub: 'ana',
    email: 'ana@uni-a.example',
    name: 'Ana Lead',
    org: 'uni-a',
    realmRoles: ['lead', 'offline_access'],
    clientRoles: ['member'],
    groups: ['/researchers'],
  },
  {
    sub: 'bo',
    email: 'bo@uni-b.example',
    name: 'Bo Admin',
    org: 'uni-b',
    realmRoles: ['org_admin'],
    groups: ['/admins'],
  },
];

export interface TestProvider extends EmbeddedProvider {
  /** Device-grant polls answered before the user signed in (`authorization_pending` or `slow_down`). */
  readonly pendingPolls: number;
  /** Does the provider still take this refresh token? (Uses it up when it does: rotation.) */
  refreshTokenWorks(refreshToken: string): Promise<boolean>;
}

export async function startTestProvider(
  o: Partial<EmbeddedProviderOptions> & {
    /** Answer the first N device-grant polls with `slow_down` (RFC 8628 §3.5). */
    slowDownPolls?: number;
  } = {},
): Promise<TestProvider> {
  const p = await startEmbeddedProvider({ audience: 'https://superlink.test', users: TEST_USERS, ...o });
  let pendingPolls = 0;
  // Rewrites the provider's own `authorization_pending` answers, so the request is untouched.
  p.provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as { error?: string } | undefined;
    if (ctx.path !== '/token' || body?.error !== 'authorization_pending') return;
    pendingPolls++;
    if (pendingPolls <= (o.slowDownPolls ?? 0))
      ctx.body = { error: 'slow_down', error_description: 'poll less often' };
  });
  return {
    ...p,
    get pendingPolls() {
      return pendingPolls;
    },
    async refreshTokenWorks(refreshToken) {
      const config = await oidc.discovery(new URL(p.issuer), p.clientId, undefined, oidc.None(), {
        execute: [oidc.allowInsecureRequests],
      });
      try {
        await oidc.refreshTokenGrant(config, refreshToken);
        return true;
      } catch (e) {
        if (e instanceof oidc.ResponseBodyError && e.error === 'invalid_grant') return false;
        throw e;
      }
    },
  };
}
