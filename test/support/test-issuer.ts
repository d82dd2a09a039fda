/**
 * A tiny OpenID Provider for token checks: real HTTP on 127.0.0.1 serving a discovery document
 * and a JWKS, and tokens signed with jose. It counts the requests it answers, publishes and
 * retires keys (rotation), can play dead (`down`), and can claim another issuer's name — the
 * attacks a token verifier must refuse. (For the login flow, use a real `oidc-provider`.)
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';

export type TestAlg = 'ES256' | 'RS256' | 'PS256' | 'EdDSA';

export interface TestKey {
  kid: string;
  alg: TestAlg;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface SignOptions {
  /** Signing key (default: the newest published one). */
  key?: TestKey;
  /** Replaces the protected header's fields (e.g. another `kid`). */
  header?: Record<string, unknown>;
  /** Epoch seconds for `iat` and the default `exp` (default: the issuer's clock). */
  now?: number;
  /** Lifetime for the default `exp`, in seconds (default 300). */
  ttl?: number;
}

export interface TestIssuer {
  /** The issuer identifier (`iss`) and discovery base: `http://127.0.0.1:PORT/realms/NAME`. */
  readonly url: string;
  readonly audience: string;
  /** Requests received per path since start, answered or dropped (`/realms/NAME/jwks`, …). */
  readonly hits: Map<string, number>;
  jwksFetches(): number;
  discoveryFetches(): number;
  /** Published keys, newest last. */
  readonly keys: TestKey[];
  /** Drop every connection, as a provider that is down. */
  down: boolean;
  /** The `issuer` the discovery document names (default: `url`). */
  discoveryIssuer: string;
  /** The issuer's clock (epoch ms). */
  now: () => number;
  sign(claims?: JWTPayload, o?: SignOptions): Promise<string>;
  /** Create a key; `publish` (default true) adds it to the JWKS. */
  addKey(o?: { alg?: TestAlg; kid?: string; publish?: boolean }): Promise<TestKey>;
  /** Stop publishing a key. */
  retire(kid: string): void;
  close(): Promise<void>;
}

export async function newTestKey(alg: TestAlg = 'ES256', kid: string = randomUUID()): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk };
}

/**
 * Start a provider on a free port. `kid`/`alg` name its first key; `audience` is the default `aud`
 * of the tokens it signs.
 *
 * @example
 * ```ts
 * const issuer = await startTestIssuer();
 * const token = await issuer.sign({ sub: 'alice', realm_access: { roles: ['lead'] } });
 * ```
 */
export async function startTestIssuer(
  o: { realm?: string; kid?: string; alg?: TestAlg; audience?: string; now?: () => number } = {},
): Promise<TestIssuer> {
  const realm = o.realm ?? 'pollen';
  const path = `/realms/${realm}`;
  const keys: TestKey[] = [await newTestKey(o.alg, o.kid)];
  const hits = new Map<string, number>();
  let url = '';

  const server: Server = createServer((req, res) => {
    const p = req.url ?? '';
    hits.set(p, (hits.get(p) ?? 0) + 1);
    if (issuer.down) {
      req.socket.destroy();
      return;
    }
    const json = (body: unknown) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (p === `${path}/.well-known/openid-configuration`)
      json({
        issuer: issuer.discoveryIssuer,
        jwks_uri: `${url}/jwks`,
        token_endpoint: `${url}/token`,
        device_authorization_endpoint: `${url}/device`,
        id_token_signing_alg_values_supported: [...new Set(keys.map((k) => k.alg))],
      });
    else if (p === `${path}/jwks`) json({ keys: keys.map((k) => k.publicJwk) });
    else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;

  const issuer: TestIssuer = {
    url,
    audience: o.audience ?? 'pollen',
    hits,
    jwksFetches: () => hits.get(`${path}/jwks`) ?? 0,
    discoveryFetches: () => hits.get(`${path}/.well-known/openid-configuration`) ?? 0,
    keys,
    down: false,
    discoveryIssuer: url,
    now: o.now ?? Date.now,
    async sign(claims = {}, s = {}) {
      const key = s.key ?? keys.at(-1)!;
      const iat = s.now ?? Math.floor(issuer.now() / 1000);
      return new SignJWT({
        iss: url,
        aud: issuer.audience,
        sub: 'alice',
        iat,
        exp: iat + (s.ttl ?? 300),
        ...claims,
      })
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt', ...s.header })
        .sign(key.privateKey);
    },
    async addKey(a = {}) {
      const key = await newTestKey(a.alg, a.kid);
      if (a.publish ?? true) keys.push(key);
      return key;
    },
    retire(kid) {
      const i = keys.findIndex((k) => k.kid === kid);
      if (i >= 0) keys.splice(i, 1);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return issuer;
}
