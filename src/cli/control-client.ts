/**
 * Control and Federations API clients for the SuperLink and federation a command targets
 * (`target.ts`). One identity per call, the first of: a service-account secret given explicitly
 * (POLLEN_TOKEN, or `--token-file` / POLLEN_TOKEN_FILE), the user's login to the SuperLink
 * (`pollen login`), the connection's admin certificate. Whenever a bearer token is sent, no client
 * certificate is presented, even if the connection has an admin kit: the SuperLink refuses a call
 * with both.
 */
import { existsSync } from 'node:fs';
import type { Client, Interceptor } from '@connectrpc/connect';
import { PollenError } from '../errors.js';
import { Audit } from '../gen/pollen/v1/audit_pb.js';
import { Control } from '../gen/pollen/v1/control_pb.js';
import { Federations } from '../gen/pollen/v1/federations_pb.js';
import { type Endpoint, explainCallFailure } from '../transport/call-failure.js';
import type { ChunkTransport } from '../transport/chunk-transport.js';
import { openChannel } from '../transport/rpc-client.js';
import { nearest } from '../util/text.js';
import { bearerFromEnv } from './bearer.js';
import type { GlobalFlags } from './command.js';
import { type Connection, configPath, readConnections } from './connections.js';
import { loginPath } from './login/token-store.js';
import { Reported } from './output.js';
import { resolveTarget, type Target, type TargetArg } from './target.js';

/** Where the CLI finds its SuperLink and credentials: the global `--config`, `--superlink`, `--token-file`. */
export type CredentialFlags = Pick<GlobalFlags, 'config' | 'superlink' | 'tokenFile'>;

/** The bearer token of a call: a fixed secret, or a login's token refreshed when due. */
interface Bearer {
  current(): Promise<string>;
  readonly latest: string;
}

export interface ControlSession extends Target {
  control: Client<typeof Control>;
  federations: Client<typeof Federations>;
  /** The Audit API on the same port (proto/pollen/v1/audit.proto). */
  audit: Client<typeof Audit>;
  /** Chunks to and from the SuperLink (app bundles up, run artefacts down), over the channel's bulk route. */
  chunks: ChunkTransport;
  close(): void;
}

/** Open the Control and Federations APIs of the SuperLink `target` names (see target.ts). */
export async function openControl(target: TargetArg, flags: CredentialFlags = {}): Promise<ControlSession> {
  const resolved = resolveTarget(target, flags);
  const { connection } = resolved;
  const tokens =
    secretBearer(bearerFromEnv(flags)) ??
    (await loginBearer(loginPath(configPath(flags.config), connection.name)));
  if (!tokens && connection.tls && !connection.tls.cert)
    throw new PollenError(
      'LOGIN_REQUIRED',
      `You are not logged in to ${connection.name}, and it has no admin certificate`,
      {
        hint: `Log in: pollen login ${connection.name}`,
      },
    );
  // Fails here (login ended, provider away) before any call is made.
  await tokens?.current();
  const channel = openChannel({
    baseUrl: connection.url,
    tls: tokens && connection.tls ? { ca: connection.tls.ca } : connection.tls,
    defaultTimeoutMs: 60_000,
    ...(tokens && {
      interceptors: [bearer(tokens)],
      bulkHeaders: () => ({ authorization: `Bearer ${tokens.latest}` }),
    }),
  });
  const control = channel.client(Control);
  return {
    ...resolved,
    control,
    federations: channel.client(Federations),
    audit: channel.client(Audit),
    chunks: channel.chunks(control),
    close: () => channel.close(),
  };
}

/**
 * Open the SuperLink's APIs for `fn`, and close them when `fn` is done. A call that failed on the
 * way (TLS, a wrong address, the SuperLink away) fails with the precise code.
 */
export async function withControl<T>(
  target: TargetArg,
  flags: CredentialFlags,
  fn: (s: ControlSession) => Promise<T>,
): Promise<T> {
  const s = await openControl(target, flags);
  try {
    return await fn(s);
  } catch (e) {
    if (e instanceof Reported) throw e;
    if (e instanceof PollenError && e.code === 'FEDERATION_NOT_FOUND') throw federationNotFound(s, e, flags);
    throw await explainCallFailure(e, controlEndpoint(s.connection));
  } finally {
    s.close();
  }
}

/**
 * The SuperLink's FEDERATION_NOT_FOUND, saying which SuperLink was asked and how the name
 * resolved; a name near one of the user's connections was most likely meant as that one.
 */
function federationNotFound(s: ControlSession, e: PollenError, flags: CredentialFlags): PollenError {
  const names = Object.keys(readConnections(configPath(flags.config)).entries);
  const near = s.guessed ? nearest(s.federation, names) : undefined;
  return new PollenError(
    'FEDERATION_NOT_FOUND',
    `No federation "${s.federation}" that you belong to on SuperLink "${s.connection.name}"`,
    {
      cause: e,
      hint: near
        ? `Did you mean ${near}? Known SuperLinks: ${names.join(', ')} (pollen config superlink list); a last argument that names none of them is a federation on the default one.`
        : s.guessed
          ? `${e.hint} A last argument that names none of your SuperLinks (pollen config superlink list) is a federation on the default one.`
          : e.hint,
      ...(near && { data: { suggestion: near } }),
    },
  );
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

/** The connection's Control API, as failures name it and say what to fix. */
export function controlEndpoint(c: Connection): Endpoint {
  return {
    api: "the SuperLink's Control API",
    url: c.url,
    tls: c.tls,
    hints: {
      serverCert: `The server's certificate does not chain to the root CA of SuperLink "${c.name}": check its address and its root-certificate or kit (\`pollen config superlink list\`).`,
      ourCert: `The SuperLink does not trust the admin certificate of connection "${c.name}": it is from another project or CA. Use an admin kit of this SuperLink's project: \`pollen config superlink add ${c.name} --address HOST:9093 --kit ADMIN_KIT\`.`,
      address: `The address of SuperLink "${c.name}" must be its Control API (port 9093 by default), not its Fleet API (9092): \`pollen config superlink add ${c.name} --address HOST:9093 …\` replaces it.`,
    },
  };
}
