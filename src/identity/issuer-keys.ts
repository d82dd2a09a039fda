/**
 * An OpenID Provider's signing keys, found by discovery and cached. Unlike jose's
 * `createRemoteJWKSet`, which drops its keys once they are older than `cacheMaxAge` and then
 * fails while the issuer is down, this cache keeps every key it has until a fetch succeeds with a
 * newer set: tokens signed with a cached key keep verifying through an outage. Fetches are rate
 * limited: whatever asks (a token with an unknown `kid`, the periodic refresh), at most one fetch
 * starts per cooldown, so a flood of tokens with random `kid`s costs one request per cooldown.
 */
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { PollenError } from '../errors.js';
import { isAcceptableIssuerUrl } from './oidc-config.js';

export interface IssuerKeysOptions {
  issuer: string;
  fetch: typeof fetch;
  /** Epoch ms. */
  now: () => number;
  /** The least time between two fetches of the key set. */
  cooldownMs: number;
  /** Keys older than this are fetched again in the background (the cached ones stay meanwhile). */
  maxAgeMs: number;
  /** How long one HTTP request to the issuer may take. */
  timeoutMs: number;
  /** Called when a fetch brought a key set that differs from the cached one. */
  onKeysChanged?: () => void;
}

/** A provider document is small; anything larger is not one. */
const MAX_DOCUMENT_BYTES = 512 * 1024;

export class IssuerKeys {
  readonly #o: IssuerKeysOptions;
  #keys: JWTVerifyGetKey | undefined;
  #loadedAt = Number.NEGATIVE_INFINITY;
  #triedAt = Number.NEGATIVE_INFINITY;
  /** Why the last fetch failed (undefined after a success). */
  #failure: PollenError | undefined;
  #inFlight: Promise<void> | undefined;
  #jwksUri: string | undefined;
  /** The key set as last fetched, to tell a change from the same set again. */
  #published = '';

  constructor(o: IssuerKeysOptions) {
    this.#o = o;
  }

  /** The cached key set (fetched first when there is none); starts a background refresh when it is old. */
  async current(): Promise<JWTVerifyGetKey> {
    if (!this.#keys) {
      await this.refresh();
      if (!this.#keys) throw this.#failure ?? unreachable(this.#o.issuer, 'no keys are cached yet');
      return this.#keys;
    }
    this.keepFresh();
    return this.#keys;
  }

  /** Start a background fetch when the cached keys are old (its failure is remembered; they keep serving). */
  keepFresh(): void {
    if (this.#o.now() - this.#loadedAt >= this.#o.maxAgeMs && !this.#inFlight) this.refresh().catch(() => {});
  }

  /**
   * Fetch the key set again unless a fetch started within the cooldown. Resolves true when a
   * fetch completed (the caller may look its key up again), false when the cooldown held it back
   * after a successful fetch; rejects with the failure of the fetch it made or waited for, or of
   * the last one while the cooldown runs.
   */
  async refresh(): Promise<boolean> {
    if (this.#inFlight) {
      await this.#inFlight;
      return true;
    }
    if (this.#o.now() - this.#triedAt < this.#o.cooldownMs) {
      if (this.#failure) throw this.#failure;
      return false;
    }
    this.#triedAt = this.#o.now();
    this.#inFlight = this.#fetchKeys().finally(() => {
      this.#inFlight = undefined;
    });
    await this.#inFlight;
    return true;
  }

  async #fetchKeys(): Promise<void> {
    try {
      this.#jwksUri ??= await this.#discover();
      const jwks = await this.#getJson(this.#jwksUri, 'key set');
      const keys = Array.isArray((jwks as JSONWebKeySet | undefined)?.keys)
        ? (jwks as JSONWebKeySet).keys
        : undefined;
      if (!keys) throw misconfigured(`The key set at ${this.#jwksUri} has no "keys" list`);
      // Symmetric keys never verify a token here (only asymmetric algorithms are allowed).
      const usable = keys.filter((k) => k?.kty !== 'oct');
      const text = JSON.stringify(usable);
      if (text !== this.#published || !this.#keys) {
        this.#keys = createLocalJWKSet({ keys: usable });
        this.#published = text;
        this.#o.onKeysChanged?.();
      }
      this.#loadedAt = this.#o.now();
      this.#failure = undefined;
    } catch (e) {
      // Look the endpoint up again next time: the provider may have moved it.
      this.#jwksUri = undefined;
      this.#failure =
        e instanceof PollenError ? e : misconfigured(`The key set of ${this.#o.issuer} is not valid`, e);
      throw this.#failure;
    }
  }

  async #discover(): Promise<string> {
    const url = `${this.#o.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const doc = (await this.#getJson(url, 'discovery document')) as Record<string, unknown> | null;
    if (doc?.['issuer'] !== this.#o.issuer)
      throw misconfigured(
        `The discovery document of ${this.#o.issuer} names the issuer ${JSON.stringify(doc?.['issuer'])}`,
      );
    const jwksUri = doc['jwks_uri'];
    if (typeof jwksUri !== 'string' || !isAcceptableIssuerUrl(jwksUri))
      throw misconfigured(`The discovery document of ${this.#o.issuer} has no https jwks_uri`);
    return jwksUri;
  }

  async #getJson(url: string, what: string): Promise<unknown> {
    let res: Response;
    try {
      res = await this.#o.fetch(url, {
        headers: { accept: 'application/json' },
        redirect: 'error',
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
    } catch (e) {
      throw unreachable(this.#o.issuer, `cannot fetch its ${what} (${errorName(e)})`, e);
    }
    if (res.status >= 500 || res.status === 429)
      throw unreachable(this.#o.issuer, `its ${what} answered HTTP ${res.status}`);
    if (!res.ok)
      throw misconfigured(`The ${what} of ${this.#o.issuer} answered HTTP ${res.status} at ${url}`);
    const text = await res.text();
    if (text.length > MAX_DOCUMENT_BYTES)
      throw misconfigured(`The ${what} of ${this.#o.issuer} is larger than ${MAX_DOCUMENT_BYTES} bytes`);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw misconfigured(`The ${what} of ${this.#o.issuer} is not JSON`, e);
    }
  }
}

function errorName(e: unknown): string {
  const cause = (e as { cause?: { code?: string } })?.cause;
  return cause?.code ?? (e as Error)?.name ?? 'error';
}

function unreachable(issuer: string, why: string, cause?: unknown): PollenError {
  return new PollenError('ISSUER_UNREACHABLE', `The identity provider ${issuer} is unreachable: ${why}`, {
    ...(cause !== undefined && { cause }),
  });
}

function misconfigured(message: string, cause?: unknown): PollenError {
  return new PollenError('ISSUER_MISCONFIGURED', message, { ...(cause !== undefined && { cause }) });
}
