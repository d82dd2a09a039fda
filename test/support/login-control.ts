/**
 * For tests of the CLI side of logins: the embedded provider's tokens as a SuperLink takes them
 * (`providerTokens`: its OIDC settings and verifier), and a Control API that serves only what
 * `pollen login` and `whoami` need (`startLoginControl`), over real TLS on 127.0.0.1 with no
 * client certificate asked for.
 */
import pino from 'pino';
import type { EmbeddedProvider } from '../../src/demo/oidc-provider.js';
import { PollenError } from '../../src/errors.js';
import { Control } from '../../src/gen/pollen/v1/control_pb.js';
import type { OidcConfig, TokenVerifier } from '../../src/identity/identity.js';
import { parseOidcConfig } from '../../src/identity/oidc-config.js';
import { createTokenVerifier } from '../../src/identity/token-verifier.js';
import { loginDetails } from '../../src/superlink/login-details.js';
import { guard } from '../../src/transport/errors.js';
import { startRpcServer } from '../../src/transport/rpc-server.js';
import { type TlsMaterial, withRootInChain } from '../../src/transport/tls.js';
import { type CliResult, pollenInProcess } from './cli.js';
import { actAsDeviceUser } from './oidc-provider.js';

/** What a SuperLink that accepts the provider's access tokens is given (Keycloak-shaped claims). */
export function providerTokens(provider: EmbeddedProvider): { oidc: OidcConfig; tokens: TokenVerifier } {
  const oidc = parseOidcConfig({
    issuer: provider.issuer,
    audience: provider.audience,
    'client-id': provider.clientId,
    algorithms: ['ES256'],
  });
  return { oidc, tokens: createTokenVerifier(oidc) };
}

export interface LoginControl {
  /** HOST:PORT */
  address: string;
  /** The bearer tokens calls carried, in order. */
  bearers: string[];
  close(): Promise<void>;
}

/** GetLoginDetails (the SuperLink's handler), WhoAmI and ListRuns for the provider's tokens. */
export async function startLoginControl(
  tls: TlsMaterial,
  provider?: EmbeddedProvider,
): Promise<LoginControl> {
  const accepted = provider && providerTokens(provider);
  const bearers: string[] = [];
  const caller = async (authorization: string | null) => {
    const token = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
    if (!token || !accepted) throw new PollenError('UNAUTHENTICATED', 'No bearer token');
    bearers.push(token);
    return accepted.tokens.verify(token);
  };
  const server = await startRpcServer({
    log: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
    tls: { ...withRootInChain(tls), requireClientCert: false },
    routes: (router) =>
      router.service(Control, {
        getLoginDetails: guard(async () => loginDetails(accepted?.oidc)),
        whoAmI: guard(async (_req, ctx) => {
          const who = await caller(ctx.requestHeader.get('authorization'));
          return {
            identity: {
              ...who,
              org: who.org ?? '',
              email: who.email ?? '',
              expiresAt: BigInt(who.expiresAt ?? 0),
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

export interface LoginCode {
  verificationUri: string;
  verificationUriComplete: string | null;
  userCode: string;
}

/** `pollen login …` while a person (`as`) signs in at the provider, or presses Abort. */
export async function cliLogin(
  config: string,
  args: string[],
  as: { user: string } | { deny: true } | 'nobody' = { user: 'ana' },
  json = true,
): Promise<{ r: CliResult; code?: LoginCode }> {
  let code: LoginCode | undefined;
  let person: Promise<unknown> = Promise.resolve();
  const r = await pollenInProcess(['login', ...args, '--config', config, ...(json ? ['--json'] : [])], {
    onStderr: (text) => {
      const m = json ? /^\{"event":"login\.code".*$/m.exec(text) : /enter the code (\S+)/.exec(text);
      if (!m || code || as === 'nobody') return;
      code = json
        ? (JSON.parse(m[0]) as LoginCode)
        : { verificationUri: /open (\S+)/.exec(text)![1]!, verificationUriComplete: null, userCode: m[1]! };
      person = actAsDeviceUser({
        verificationUri: code.verificationUri,
        userCode: code.userCode,
        login: 'user' in as ? as.user : 'ana',
        deny: 'deny' in as,
      });
    },
  });
  await person;
  return { r, code };
}
