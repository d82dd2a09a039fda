/**
 * Checks an OIDC access token the way docs/identity.md ("Token checks") lists: its shape, an
 * allowed asymmetric algorithm, the issuer, a signature by one of the issuer's published keys
 * (`issuer-keys.ts`), the audience, `exp`/`nbf` within the configured clock skew; then maps its
 * claims to an identity (`claims.ts`). Each refusal is a PollenError with its own code.
 *
 * The algorithm and the issuer are read from the token before its signature is checked: a
 * refusal needs no proof, and a token from another provider is named as such (ACCESS_TOKEN_WRONG_ISSUER)
 * without fetching anything. Only acceptance rests on the verified token.
 */
import { decodeJwt, decodeProtectedHeader, errors, type JWTPayload, jwtVerify } from 'jose';
import { PollenError } from '../errors.js';
import { claimMapper } from './claims.js';
import type { Identity, OidcConfig, TokenVerifier } from './identity.js';
import { IssuerKeys } from './issuer-keys.js';
import { ASYMMETRIC_ALGORITHMS, MAX_CLOCK_SKEW_SECONDS } from './oidc-config.js';

export interface TokenVerifierDeps {
  fetch?: typeof fetch;
  /** Epoch ms (tests inject a manual clock). */
  now?: () => number;
  /** The least time between two fetches of the issuer's keys (default 10 s). */
  keyRefreshCooldownMs?: number;
  /** Keys older than this are fetched again in the background (default 10 min). */
  keyMaxAgeMs?: number;
  /** One request to the issuer (default 5 s). */
  issuerTimeoutMs?: number;
  /** How many verified tokens to remember until they expire (default 1024; 0: none). */
  verifiedCacheSize?: number;
}

/** Keycloak's `typ` claim of the tokens that are not access tokens. */
const NOT_ACCESS_TOKENS = new Set(['ID', 'Refresh', 'Offline', 'Logout']);

/** Longer than any access token a provider issues (Keycloak's with many roles are a few KiB). */
const MAX_TOKEN_LENGTH = 16 * 1024;

/**
 * A `TokenVerifier` for one OpenID Provider. The identities it returns are frozen: calls that send
 * the same token share one.
 *
 * @example
 * ```ts
 * const verifier = createTokenVerifier(parseOidcConfig(section));
 * const who = await verifier.verify(bearerToken); // throws ACCESS_TOKEN_EXPIRED, ACCESS_TOKEN_WRONG_AUDIENCE, …
 * ```
 */
export function createTokenVerifier(config: OidcConfig, deps: TokenVerifierDeps = {}): TokenVerifier {
  checkConfig(config);
  const now = deps.now ?? Date.now;
  const keys = new IssuerKeys({
    issuer: config.issuer,
    fetch: deps.fetch ?? globalThis.fetch,
    now,
    cooldownMs: deps.keyRefreshCooldownMs ?? 10_000,
    maxAgeMs: deps.keyMaxAgeMs ?? 600_000,
    timeoutMs: deps.issuerTimeoutMs ?? 5_000,
    // A token verified with a key that is gone must not outlive it in the cache.
    onKeysChanged: () => verified.clear(),
  });
  const verified = new VerifiedTokens(deps.verifiedCacheSize ?? 1024, config.clockSkewSeconds, now);
  const toIdentity = claimMapper(config.claims);
  const allowed = new Set(config.algorithms);
  const options = {
    issuer: config.issuer,
    audience: config.audience,
    algorithms: config.algorithms,
    clockTolerance: config.clockSkewSeconds,
    requiredClaims: ['exp', 'sub'],
  };

  const check = async (token: string): Promise<JWTPayload> => {
    const currentDate = new Date(now());
    try {
      return (await jwtVerify(token, await keys.current(), { ...options, currentDate })).payload;
    } catch (e) {
      if (!(e instanceof errors.JWKSNoMatchingKey)) throw e;
    }
    // A key the cache does not have: the provider may have rotated. Fetch once (rate limited).
    if (!(await keys.refresh()))
      throw new PollenError(
        'ACCESS_TOKEN_UNKNOWN_KEY',
        'The access token is signed with a key its issuer does not publish',
      );
    return (await jwtVerify(token, await keys.current(), { ...options, currentDate })).payload;
  };

  return {
    async verify(token: string) {
      const known = verified.get(token);
      if (known) {
        // A retired key must not live on in the cache: the periodic refresh clears it.
        keys.keepFresh();
        return known;
      }
      const { alg, payload } = readUnverified(token);
      if (!allowed.has(alg))
        throw new PollenError(
          'ACCESS_TOKEN_ALG_NOT_ALLOWED',
          `Access tokens signed with ${shown(alg)} are not accepted (allowed: ${config.algorithms.join(', ')})`,
        );
      if (payload.iss !== config.issuer)
        throw new PollenError(
          'ACCESS_TOKEN_WRONG_ISSUER',
          `The access token was issued by ${shown(payload.iss)}; this service accepts ${config.issuer}`,
        );
      // Keycloak marks its other tokens: an ID token proves a login to the client, not access to a service.
      const typ = payload['typ'];
      if (typeof typ === 'string' && NOT_ACCESS_TOKENS.has(typ))
        throw new PollenError('ACCESS_TOKEN_MALFORMED', `This is a ${shown(typ)} token, not an access token`);
      let claims: JWTPayload;
      try {
        claims = await check(token);
      } catch (e) {
        throw refusal(e, payload, config);
      }
      const who = toIdentity(claims as Record<string, unknown>);
      verified.add(token, who);
      return who;
    },
  };
}

/**
 * Tokens already verified, until they expire: a client sends the same access token on every call
 * for its lifetime, and the signature check is the dearest part of a call (bench/token-verify.ts).
 * Bounded: the oldest entry goes first. Identities are frozen, as they are shared between calls.
 */
class VerifiedTokens {
  readonly #entries = new Map<string, Identity>();
  constructor(
    readonly max: number,
    readonly skewSeconds: number,
    readonly now: () => number,
  ) {}

  get(token: string): Identity | undefined {
    const who = this.#entries.get(token);
    if (!who) return undefined;
    // Expired (as jose would judge it): forget it, and let the full check give the refusal.
    if (who.expiresAt === undefined || this.now() >= who.expiresAt + this.skewSeconds * 1000) {
      this.#entries.delete(token);
      return undefined;
    }
    return who;
  }

  add(token: string, who: Identity): void {
    if (this.max <= 0 || who.expiresAt === undefined) return;
    if (this.#entries.size >= this.max) this.#entries.delete(this.#entries.keys().next().value!);
    Object.freeze(who.roles);
    this.#entries.set(token, Object.freeze(who));
  }

  clear(): void {
    this.#entries.clear();
  }
}

/** A value from an unverified token, quoted and cut short: messages echo what helps, not what an attacker wrote. */
function shown(v: unknown): string {
  const s = JSON.stringify(v ?? null);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/** The header's `alg` and the claims, unverified (to refuse early); ACCESS_TOKEN_MALFORMED when unreadable. */
function readUnverified(token: string): { alg: string; payload: JWTPayload } {
  const malformed = (why: string) => new PollenError('ACCESS_TOKEN_MALFORMED', `The access token ${why}`);
  if (typeof token !== 'string' || token.length === 0) throw malformed('is empty');
  if (token.length > MAX_TOKEN_LENGTH) throw malformed(`is longer than ${MAX_TOKEN_LENGTH} characters`);
  if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(token))
    throw malformed('is not a signed JWT (three base64url parts joined by dots)');
  try {
    const { alg } = decodeProtectedHeader(token);
    if (typeof alg !== 'string') throw malformed('names no signature algorithm (alg)');
    return { alg, payload: decodeJwt(token) };
  } catch (e) {
    if (e instanceof PollenError) throw e;
    throw malformed('is not a readable JWT');
  }
}

/** The PollenError for what jose (or the key cache) refused. */
function refusal(e: unknown, claims: JWTPayload, config: OidcConfig): unknown {
  if (e instanceof PollenError) return e;
  if (e instanceof errors.JWTExpired) {
    const at = typeof claims.exp === 'number' ? ` at ${new Date(claims.exp * 1000).toISOString()}` : '';
    return new PollenError('ACCESS_TOKEN_EXPIRED', `The access token expired${at}`);
  }
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.claim === 'aud')
      return new PollenError(
        'ACCESS_TOKEN_WRONG_AUDIENCE',
        `The access token is for ${shown(claims.aud)}, not for this service (${config.audience})`,
      );
    if (e.claim === 'nbf' && e.reason === 'check_failed') {
      const at = typeof claims.nbf === 'number' ? ` until ${new Date(claims.nbf * 1000).toISOString()}` : '';
      return new PollenError('ACCESS_TOKEN_NOT_YET_VALID', `The access token is not valid${at}`);
    }
    return new PollenError(
      'ACCESS_TOKEN_MALFORMED',
      `The access token's "${e.claim}" claim is missing or invalid`,
    );
  }
  if (e instanceof errors.JWSSignatureVerificationFailed)
    return new PollenError(
      'ACCESS_TOKEN_BAD_SIGNATURE',
      `The access token's signature does not verify with ${config.issuer}'s key`,
    );
  if (e instanceof errors.JWKSNoMatchingKey)
    return new PollenError(
      'ACCESS_TOKEN_UNKNOWN_KEY',
      'The access token is signed with a key its issuer does not publish',
    );
  if (e instanceof errors.JWKSMultipleMatchingKeys)
    return new PollenError(
      'ACCESS_TOKEN_UNKNOWN_KEY',
      'The access token names no key (kid) and its issuer publishes several that could have signed it',
    );
  if (e instanceof errors.JOSEAlgNotAllowed || e instanceof errors.JOSENotSupported)
    return new PollenError(
      'ACCESS_TOKEN_ALG_NOT_ALLOWED',
      "The access token's signature algorithm is not accepted",
    );
  if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid)
    return new PollenError('ACCESS_TOKEN_MALFORMED', 'The access token is not a valid signed JWT');
  return e;
}

/** A configuration built without `parseOidcConfig` gets the same two hard limits. */
function checkConfig(config: OidcConfig): void {
  const weak = config.algorithms.filter((a) => !(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(a));
  if (weak.length > 0 || config.algorithms.length === 0)
    throw new PollenError(
      'CONFIG_INVALID',
      `OIDC algorithms must be asymmetric JWS algorithms; refused: ${weak.join(', ') || '(none listed)'}`,
    );
  if (!(config.clockSkewSeconds >= 0 && config.clockSkewSeconds <= MAX_CLOCK_SKEW_SECONDS))
    throw new PollenError(
      'CONFIG_INVALID',
      `OIDC clock skew must be 0 to ${MAX_CLOCK_SKEW_SECONDS} seconds, not ${config.clockSkewSeconds}`,
    );
}
