import { dirname, join } from 'node:path';
import { renderUnicodeCompact } from 'uqr';
import { PollenError } from '../../errors.js';
import { Control, type GetLoginDetailsResponse } from '../../gen/pollen/v1/control_pb.js';
import { explainCallFailure } from '../../transport/call-failure.js';
import { rpc } from '../../transport/errors.js';
import { openChannel } from '../../transport/rpc-client.js';
import { writeFileAtomic } from '../../util/files.js';
import { type Connection, configPath, readConnections, saveConnection } from '../connections.js';
import { controlEndpoint } from '../control-client.js';
import { bold, dim, type Output } from '../output.js';
import { resolveTarget } from '../target.js';
import { storedLogin } from './access-token.js';
import { loginClock } from './clock.js';
import { type DevicePrompt, deviceFlow } from './device-flow.js';
import { DEFAULT_SCOPES, discoverIssuer, type LoginDetails } from './issuer.js';
import { type Revocation, revokeLogin } from './logout.js';
import { fetchPinnedRoot } from './pinned-root.js';
import { loginPath, readLogin, type StoredLogin, saveLogin } from './token-store.js';

export interface LoginOptions {
  /** A SuperLink connection, or a federation on the default one (target.ts): login is per SuperLink. */
  federation?: string;
  superlink?: string;
  /** With --root-fingerprint: the SuperLink's Control API, for a SuperLink not configured yet. */
  address?: string;
  rootFingerprint?: string;
  /** commander's `--no-qr`. */
  qr?: boolean;
  config?: string;
  json?: boolean;
}

/** Report progress this often while the person signs in. */
const PROGRESS_EVERY_MS = 30_000;

/** `pollen login`: the device authorization grant against the SuperLink's OpenID Provider. */
export async function login(o: LoginOptions, out: Output): Promise<void> {
  const path = configPath(o.config);
  const { connection } =
    o.rootFingerprint || o.address
      ? resolveTarget(undefined, { config: o.config, superlink: await trustRoot(o, path, out) })
      : resolveTarget(o.federation, o);
  const details = await detailsOf(connection);
  const config = await discoverIssuer(details.issuer, details.clientId);
  let nextProgress = 0;
  const tokens = await deviceFlow(config, details, {
    prompt: (p) => showPrompt(p, o.qr !== false, out),
    polling: ({ msLeft, intervalMs, slowDowns }) => {
      if (loginClock.now() < nextProgress) return;
      nextProgress = loginClock.now() + PROGRESS_EVERY_MS;
      const minutes = Math.max(0, Math.ceil(msLeft / 60_000));
      out.progress(
        `waiting for you to sign in (the code expires in ${minutes} min; asking every ${intervalMs / 1000} s${slowDowns ? `, slowed down ${slowDowns}× by the provider` : ''})`,
      );
    },
  });
  const stored = storedLogin(connection.name, details, tokens);
  const file = loginPath(path, connection.name);
  // Logging in again ends the previous login at the provider too, as logout would: a refresh
  // token left behind would stay good for as long as the provider keeps it.
  const previous = previousLogin(file);
  let previousRevoked: Revocation | null = null;
  if (previous) {
    const r = await revokeLogin(previous);
    previousRevoked = r.outcome;
    if (r.error)
      out.warn(`${r.error.message}; the previous refresh token was not revoked, only replaced here`);
  }
  saveLogin(file, stored);
  out.result(
    {
      superlink: connection.name,
      issuer: details.issuer,
      subject: stored.subject ?? null,
      email: stored.email ?? null,
      expiresAt: new Date(stored.expiresAt).toISOString(),
      refreshable: stored.refreshToken !== undefined,
      tokenFile: file,
      certificateSetAside: Boolean(connection.tls?.cert),
      previousRevoked,
    },
    (d) => [
      `logged in to ${bold(d.superlink)} as ${bold(d.email ?? d.subject ?? 'unknown')} ${dim(`(${d.issuer})`)}`,
      `  token saved in ${d.tokenFile} (0600)${d.refreshable ? ', refreshed when it expires' : ''}`,
      ...(d.previousRevoked === 'revoked'
        ? [dim('  the previous login was ended (its refresh token revoked at the identity provider)')]
        : []),
      ...(d.certificateSetAside
        ? [
            dim(
              `  calls to ${d.superlink} now carry your token instead of its admin certificate; pollen logout ${d.superlink} returns to the certificate`,
            ),
          ]
        : []),
    ],
  );
}

/** The login this one replaces; a file Pollen did not write is only replaced. */
function previousLogin(file: string): StoredLogin | undefined {
  try {
    return readLogin(file);
  } catch {
    return undefined;
  }
}

/**
 * --address + --root-fingerprint: pin the SuperLink's root and save the connection NAME (its other
 * settings, if it exists, are kept). Returns the connection's name.
 */
async function trustRoot(o: LoginOptions, path: string, out: Output): Promise<string> {
  const name = o.federation ?? 'default';
  const file = readConnections(path);
  const existing = file.entries[name];
  const address = o.address ?? existing?.address;
  if (!o.rootFingerprint || !address)
    throw new PollenError('USAGE', 'Give --address HOST:9093 and --root-fingerprint sha256:HEX together', {
      hint: 'pollen login NAME --address superlink.example.org:9093 --root-fingerprint sha256:… (the project admin gives you both)',
    });
  const root = await fetchPinnedRoot(address, o.rootFingerprint);
  const rootFile = join(dirname(path), 'roots', `${name}.pem`);
  writeFileAtomic(rootFile, root.pem);
  // The first connection becomes the default; an existing default stays.
  saveConnection(name, { ...existing, address, 'root-certificate': rootFile }, false, path);
  out.progress(`trusting ${root.subject} (${root.fingerprint}) for ${address}: saved SuperLink ${name}`);
  return name;
}

/** The issuer, client and audience: from the connection's entry, else as the SuperLink announces them. */
async function detailsOf(f: Connection): Promise<LoginDetails> {
  if (f.issuer)
    return {
      issuer: f.issuer.issuer,
      clientId: f.issuer.clientId,
      audience: f.issuer.audience ?? f.url,
      scopes: DEFAULT_SCOPES,
    };
  // Asked without a client certificate: a person logging in has none to show.
  const channel = openChannel({
    baseUrl: f.url,
    tls: f.tls && { ca: f.tls.ca },
    defaultTimeoutMs: 15_000,
    bulkHeaders: false,
  });
  let d: GetLoginDetailsResponse;
  try {
    d = await rpc(channel.client(Control).getLoginDetails({}));
  } catch (e) {
    throw await explainCallFailure(e, { ...controlEndpoint(f), tls: f.tls && { ca: f.tls.ca } });
  } finally {
    channel.close();
  }
  if (!d.issuer)
    throw new PollenError('LOGIN_NOT_OFFERED', `The SuperLink of ${f.name} does not offer login`);
  return {
    issuer: d.issuer,
    clientId: d.clientId,
    audience: d.audience,
    scopes: d.scopes.length ? d.scopes : DEFAULT_SCOPES,
  };
}

function showPrompt(p: DevicePrompt, qr: boolean, out: Output): void {
  const complete = p.verificationUriComplete;
  out.instruct(
    [
      `To sign in, open ${bold(p.verificationUri)}`,
      `and enter the code ${bold(p.userCode)}`,
      ...(qr ? ['', ...renderUnicodeCompact(complete ?? p.verificationUri).split('\n'), ''] : []),
      ...(complete ? [dim(`(or open ${complete}, the code is in it)`)] : []),
    ],
    {
      event: 'login.code',
      verificationUri: p.verificationUri,
      verificationUriComplete: complete ?? null,
      userCode: p.userCode,
      expiresAt: new Date(p.expiresAt).toISOString(),
    },
  );
}
