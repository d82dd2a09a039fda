/**
 * A Control API client for the federation named on the command line (or the default one). One
 * identity per call, the first of: a service-account secret given explicitly (POLLEN_TOKEN, or
 * `--token-file` / POLLEN_TOKEN_FILE), the user's login to the federation (`pollen login`), the
 * federation's admin certificate. Whenever a bearer token is sent, no client certificate is
 * presented, even if the federation has an admin kit: the SuperLink refuses a call with both.
 */

import { existsSync } from 'node:fs';
import type { Client, Interceptor } from '@connectrpc/connect';
import { PollenError } from '../errors.js';
import { Control } from '../gen/pollen/v1/control_pb.js';
import { type Endpoint, explainCallFailure } from '../transport/call-failure.js';
import type { ChunkTransport } from '../transport/chunk-transport.js';
import { openChannel } from '../transport/rpc-client.js';
import { bearerFromEnv } from './bearer.js';
import type { GlobalFlags } from './command.js';
import { configPath, type Federation, loadFederation } from './federations.js';
import { loginPath } from './login/token-store.js';
import { Reported } from './output.js';

/** Where the CLI finds its credentials: the global `--config` and `--token-file`. */
export type CredentialFlags = Pick<GlobalFlags, 'config' | 'tokenFile'>;

/** The bearer token of a call: a fixed secret, or a login's token refreshed when due. */
interface Bearer {
  current(): Promise<string>;
  readonly latest: string;
}

export interface ControlSession {
  federation: Federation;
  control: Client<typeof Control>;
  /** Chunks to and from the SuperLink (app bundles up, run artefacts down), over the channel's bulk route. */
  chunks: ChunkTransport;
  close(): void;
}

export async function openControl(
  name: string | undefined,
  flags: CredentialFlags = {},
): Promise<ControlSession> {
  const path = configPath(flags.config);
  const federation = loadFederation(name, path);
  const tokens = secretBearer(bearerFromEnv(flags)) ?? (await loginBearer(loginPath(path, federation.name)));
  if (!tokens && federation.tls && !federation.tls.cert)
    throw new PollenError(
      'LOGIN_REQUIRED',
      `You are not logged in to ${federation.name}, and it has no admin certificate`,
      {
        hint: `Log in: pollen login ${federation.name}`,
      },
    );
  // Fails here (login ended, provider away) before any call is made.
  await tokens?.current();
  const channel = openChannel({
    baseUrl: federation.url,
    tls: tokens && federation.tls ? { ca: federation.tls.ca } : federation.tls,
    defaultTimeoutMs: 60_000,
    ...(tokens && {
      interceptors: [bearer(tokens)],
      bulkHeaders: () => ({ authorization: `Bearer ${tokens.latest}` }),
    }),
  });
  const control = channel.client(Control);
  return { federation, control, chunks: channel.chunks(control), close: () => channel.close() };
}

/**
 * Open the federation's Control API for `fn`, and close it when `fn` is done. A call that failed
 * on the way (TLS, a wrong address, the SuperLink away) fails with the precise code.
 */
export async function withControl<T>(
  name: string | undefined,
  flags: CredentialFlags,
  fn: (s: ControlSession) => Promise<T>,
): Promise<T> {
  const s = await openControl(name, flags);
  try {
    return await fn(s);
  } catch (e) {
    if (e instanceof Reported) throw e;
    throw await explainCallFailure(e, controlEndpoint(s.federation));
  } finally {
    s.close();
  }
}

/** A login's tokens, when there is one: the OIDC client (openid-client, jose) loads only then. */
async function loginBearer(file: string): Promise<Bearer | undefined> {
  if (!existsSync(file)) return undefined;
  const { AccessTokens } = await import('./login/access-token.js');
  return AccessTokens.load(file);
}

/** A service-account secret as a bearer: it never changes. */
function secretBearer(secret: string | undefined): Bearer | undefined {
  return secret === undefined ? undefined : { current: async () => secret, latest: secret };
}

/** `authorization: Bearer …` on every call, refreshed when due (long `log --stream` sessions too). */
function bearer(tokens: Bearer): Interceptor {
  return (next) => async (req) => {
    req.header.set('authorization', `Bearer ${await tokens.current()}`);
    return next(req);
  };
}

/** The federation's Control API, as failures name it and say what to fix. */
export function controlEndpoint(f: Federation): Endpoint {
  return {
    api: "the SuperLink's Control API",
    url: f.url,
    tls: f.tls,
    hints: {
      serverCert: `The server's certificate does not chain to the root CA of federation "${f.name}": check its address and its root-certificate or kit (\`pollen federation list\`).`,
      ourCert: `The SuperLink does not trust the admin certificate of federation "${f.name}": it is from another project or CA. Use an admin kit of this SuperLink's project: \`pollen federation add ${f.name} --address HOST:9093 --kit ADMIN_KIT\`.`,
      address: `The address of federation "${f.name}" must be the SuperLink's Control API (port 9093 by default), not its Fleet API (9092): \`pollen federation add ${f.name} --address HOST:9093 …\` replaces it.`,
    },
  };
}
