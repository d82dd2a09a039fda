/**
 * A Control API that serves what `pollen login` and `whoami` need, over real TLS on 127.0.0.1,
 * with no client certificate asked for: `GetLoginDetails` (the SuperLink's handler,
 * superlink/login-details.ts), and `WhoAmI` / `ListRuns` answered for the bearer token, checked
 * against the provider's key with jose. It stands in for the SuperLink's token checks, which are
 * tested with the SuperLink itself; here the CLI side is under test.
 */
import { createLocalJWKSet, jwtVerify } from 'jose';
import pino from 'pino';
import type { EmbeddedProvider } from '../../src/demo/oidc-provider.js';
import { PollenError } from '../../src/errors.js';
import { Control } from '../../src/gen/pollen/v1/control_pb.js';
import type { OidcConfig } from '../../src/identity/identity.js';
import { loginDetails } from '../../src/superlink/login-details.js';
import { guard } from '../../src/transport/errors.js';
import { startRpcServer } from '../../src/transport/rpc-server.js';
import { type TlsMaterial, withRootInChain } from '../../src/transport/tls.js';

export interface LoginControl {
  /** HOST:PORT */
  address: string;
  /** The bearer tokens calls carried, in order. */
  bearers: string[];
  close(): Promise<void>;
}

export async function startLoginControl(
  tls: TlsMaterial,
  provider?: EmbeddedProvider,
): Promise<LoginControl> {
  const oidc: OidcConfig | undefined = provider && {
    issuer: provider.issuer,
    audience: provider.audience,
    clientId: provider.clientId,
    scopes: ['openid', 'email', 'offline_access'],
    algorithms: ['ES256'],
    clockSkewSeconds: 30,
    claims: { roles: ['realm_access.roles'], roleNames: {}, org: 'org', email: 'email', name: 'name' },
  };
  const keys = provider && createLocalJWKSet({ keys: [provider.publicKey] });
  const bearers: string[] = [];
  const caller = async (authorization: string | null) => {
    const token = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
    if (!token || !keys || !oidc) throw new PollenError('UNAUTHENTICATED', 'No bearer token');
    bearers.push(token);
    const { payload } = await jwtVerify(token, keys, { issuer: oidc.issuer, audience: oidc.audience });
    return payload;
  };
  const server = await startRpcServer({
    log: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
    tls: { ...withRootInChain(tls), requireClientCert: false },
    routes: (router) =>
      router.service(Control, {
        getLoginDetails: guard(async () => loginDetails(oidc)),
        whoAmI: guard(async (_req, ctx) => {
          const c = await caller(ctx.requestHeader.get('authorization'));
          const realm = (c['realm_access'] as { roles?: string[] } | undefined)?.roles ?? [];
          return {
            identity: {
              kind: 'user',
              subject: String(c.sub),
              name: String(c['email']),
              email: String(c['email']),
              org: String(c['org'] ?? ''),
              roles: realm.filter((r) => r !== 'offline_access'),
              expiresAt: BigInt((c.exp ?? 0) * 1000),
            },
          };
        }),
        listRuns: guard(async (_req, ctx) => {
          await caller(ctx.requestHeader.get('authorization'));
          return { runs: [] };
        }),
      }),
  });
  const url = new URL(server.url);
  return { address: url.host, bearers, close: () => server.close() };
}
