/**
 * The access token the CLI sends for a logged-in federation: the stored one while it has more
 * than a minute left, else a fresh one from the refresh token (saved again, so the next command
 * starts from it). Only the access token ever leaves this machine for the SuperLink.
 */
import { closeSync, openSync, rmSync, statSync } from 'node:fs';
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { PollenError } from '../../errors.js';
import { loginClock } from './clock.js';
import { discoverIssuer, type LoginDetails, oauthError, providerFailure } from './issuer.js';
import { readLogin, type StoredLogin, saveLogin } from './token-store.js';

/** Refresh this long before expiry, so a call never arrives with a token that expires on the way. */
export const REFRESH_MARGIN_MS = 60_000;

/** What is kept of a token response (subject and e-mail only to show them). */
export function storedLogin(
  federation: string,
  details: LoginDetails,
  tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers,
  previousRefreshToken?: string,
): StoredLogin {
  const claims = tokens.claims() ?? safeDecode(tokens.access_token);
  return {
    federation,
    issuer: details.issuer,
    clientId: details.clientId,
    audience: details.audience,
    accessToken: tokens.access_token,
    // A provider that does not rotate refresh tokens answers a refresh without one.
    refreshToken: tokens.refresh_token ?? previousRefreshToken,
    expiresAt: loginClock.now() + (tokens.expiresIn() ?? 300) * 1000,
    subject: typeof claims?.sub === 'string' ? claims.sub : undefined,
    email: typeof claims?.email === 'string' ? claims.email : undefined,
  };
}

function safeDecode(token: string): Record<string, unknown> | undefined {
  try {
    return decodeJwt(token);
  } catch {
    return undefined; // an opaque access token: nothing to show
  }
}

/** Trade the refresh token for new tokens; a refused refresh means the login has ended. */
export async function refreshLogin(login: StoredLogin): Promise<StoredLogin> {
  if (!login.refreshToken)
    throw new PollenError(
      'LOGIN_REQUIRED',
      `The login to ${login.federation} expired (it had no refresh token)`,
    );
  const config = await discoverIssuer(login.issuer, login.clientId);
  try {
    const tokens = await oidc.refreshTokenGrant(config, login.refreshToken, { resource: login.audience });
    return storedLogin(login.federation, { ...login, scopes: [] }, tokens, login.refreshToken);
  } catch (e) {
    if (oauthError(e) === 'invalid_grant')
      throw new PollenError(
        'LOGIN_REQUIRED',
        `The login to ${login.federation} ended: the identity provider no longer accepts its refresh token`,
        { cause: e, hint: `Log in again: pollen login ${login.federation}` },
      );
    throw providerFailure(e, login.issuer);
  }
}

/** The access tokens of one stored login, refreshed (and saved) when due. */
export class AccessTokens {
  #login: StoredLogin;
  #refreshing: Promise<StoredLogin> | undefined;

  constructor(
    readonly path: string,
    login: StoredLogin,
  ) {
    this.#login = login;
  }

  /** The stored login at `path`, or undefined when not logged in. */
  static load(path: string): AccessTokens | undefined {
    const login = readLogin(path);
    return login && new AccessTokens(path, login);
  }

  /** The token as last obtained (for requests that cannot wait, e.g. bulk chunk headers). */
  get latest(): string {
    return this.#login.accessToken;
  }

  /** A token with at least REFRESH_MARGIN_MS left. */
  async current(): Promise<string> {
    if (fresh(this.#login)) return this.#login.accessToken;
    // Concurrent calls share one refresh: a rotated refresh token is good for one use only.
    this.#refreshing ??= this.#refreshOnce().then(
      (login) => {
        this.#login = login;
        this.#refreshing = undefined;
        return login;
      },
      (e) => {
        this.#refreshing = undefined;
        throw e;
      },
    );
    return (await this.#refreshing).accessToken;
  }

  /**
   * Refresh under the login's lock file, so that two commands of the same person (a `log
   * --stream` beside a `list`) never spend one rotated refresh token twice — a provider that sees
   * a refresh token reused ends the whole login. Whoever comes second finds the login refreshed.
   */
  async #refreshOnce(): Promise<StoredLogin> {
    const release = await lockLogin(this.path);
    try {
      const stored = readLogin(this.path) ?? this.#login;
      if (fresh(stored)) return stored;
      const refreshed = await refreshLogin(stored);
      saveLogin(this.path, refreshed);
      return refreshed;
    } finally {
      release();
    }
  }
}

const fresh = (login: StoredLogin) => login.expiresAt - loginClock.now() > REFRESH_MARGIN_MS;

/** How long a refresh may hold the lock before another command takes it as left behind. */
const LOCK_STALE_MS = 30_000;

/** Take `PATH.lock` (created exclusively), waiting for another command's refresh to end. */
async function lockLogin(path: string): Promise<() => void> {
  const lock = `${path}.lock`;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx', 0o600));
      return () => rmSync(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    // A command killed while refreshing leaves its lock: taken over once it is old.
    let age = 0;
    try {
      age = Date.now() - statSync(lock).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    if (age > LOCK_STALE_MS) rmSync(lock, { force: true });
    else await loginClock.sleep(50);
  }
}
