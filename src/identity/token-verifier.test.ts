import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { pollenErrorOf } from '../../test/support/errors.js';
import { startTestIssuer, type TestIssuer } from '../../test/support/test-issuer.js';
import type { OidcConfig } from './identity.js';
import { parseOidcConfig } from './oidc-config.js';
import { createTokenVerifier, type TokenVerifierDeps } from './token-verifier.js';

const open: TestIssuer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((i) => i.close()));
});

/** A clock both the issuer and the verifier read, moved by the test. */
function clock() {
  const c = { t: Date.UTC(2026, 11, 5, 12), now: () => c.t };
  return c;
}

async function issuer(o: Parameters<typeof startTestIssuer>[0] = {}) {
  const i = await startTestIssuer(o);
  open.push(i);
  return i;
}

function configFor(i: TestIssuer, extra: Record<string, unknown> = {}): OidcConfig {
  return parseOidcConfig({ issuer: i.url, audience: i.audience, 'client-id': 'pollen-cli', ...extra });
}

async function setup(o: { extra?: Record<string, unknown>; deps?: TokenVerifierDeps } = {}) {
  const c = clock();
  const idp = await issuer({ now: c.now });
  const verifier = createTokenVerifier(configFor(idp, o.extra), { now: c.now, ...o.deps });
  return { c, idp, verifier };
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('createTokenVerifier: accepted tokens', () => {
  it('verifies a token signed by the issuer and maps it to a user identity', async () => {
    const { c, idp, verifier } = await setup();
    const token = await idp.sign({
      sub: 'u-1',
      email: 'ada@hospital-a.org',
      org: 'hospital-a',
      realm_access: { roles: ['lead'] },
    });
    expect(await verifier.verify(token)).toEqual({
      kind: 'user',
      subject: 'u-1',
      name: 'ada@hospital-a.org',
      email: 'ada@hospital-a.org',
      org: 'hospital-a',
      roles: ['lead'],
      expiresAt: Math.floor(c.t / 1000) * 1000 + 300_000,
    });
    expect(idp.jwksFetches()).toBe(1);
    await verifier.verify(token);
    expect(idp.jwksFetches()).toBe(1);
  });

  it('accepts RS256 (Keycloak’s default), PS256 and EdDSA, and an audience list that contains this service', async () => {
    const c = clock();
    for (const alg of ['RS256', 'PS256', 'EdDSA'] as const) {
      const idp = await issuer({ alg, now: c.now });
      const verifier = createTokenVerifier(configFor(idp), { now: c.now });
      const who = await verifier.verify(await idp.sign({ aud: ['account', idp.audience] }));
      expect([alg, who.subject]).toEqual([alg, 'alice']);
    }
  });

  it('tolerates exp and nbf within the configured clock skew, and not beyond', async () => {
    const { c, idp, verifier } = await setup({ extra: { 'clock-skew-seconds': 30 } });
    const now = Math.floor(c.t / 1000);
    expect((await verifier.verify(await idp.sign({ exp: now - 29 }))).subject).toBe('alice');
    expect((await pollenErrorOf(verifier.verify(await idp.sign({ exp: now - 31 })))).code).toBe(
      'ACCESS_TOKEN_EXPIRED',
    );
    expect((await verifier.verify(await idp.sign({ nbf: now + 29 }))).subject).toBe('alice');
    const early = await pollenErrorOf(verifier.verify(await idp.sign({ nbf: now + 31 })));
    expect(early.code).toBe('ACCESS_TOKEN_NOT_YET_VALID');
    expect(early.message).toContain(new Date((now + 31) * 1000).toISOString());
  });
});

describe('createTokenVerifier: verified tokens remembered', () => {
  it('serves a verified token again until it expires, then refuses it as expired', async () => {
    const { c, idp, verifier } = await setup({ extra: { 'clock-skew-seconds': 60 } });
    const token = await idp.sign({}, { ttl: 300 });
    const first = await verifier.verify(token);
    expect(Object.isFrozen(first) && Object.isFrozen(first.roles)).toBe(true);
    c.t += 359_000;
    expect(await verifier.verify(token)).toBe(first);
    c.t += 1_000;
    expect((await pollenErrorOf(verifier.verify(token))).code).toBe('ACCESS_TOKEN_EXPIRED');
  });

  it('keeps at most verifiedCacheSize tokens, and none with 0', async () => {
    for (const size of [0, 1]) {
      const { idp, verifier } = await setup({ deps: { verifiedCacheSize: size } });
      const [a, b] = [await idp.sign({ sub: 'a' }), await idp.sign({ sub: 'b' })];
      const first = await verifier.verify(a);
      await verifier.verify(b);
      // a was not kept (size 0) or pushed out by b (size 1): verified anew.
      expect(await verifier.verify(a)).not.toBe(first);
      expect(await verifier.verify(a)).toEqual(first);
    }
  });
});

describe('createTokenVerifier: refusals', () => {
  it('refuses each bad token with its own code, a 401, and no token content in the message', async () => {
    const { c, idp, verifier } = await setup();
    const now = Math.floor(c.t / 1000);
    const stranger = await idp.addKey({ publish: false });
    const published = idp.keys[0]!;
    const good = await idp.sign();
    const [h, p] = good.split('.');
    const cases: Array<[string, string]> = [
      ['', 'ACCESS_TOKEN_MALFORMED'],
      ['not-a-jwt', 'ACCESS_TOKEN_MALFORMED'],
      [`${h}.${p}`, 'ACCESS_TOKEN_MALFORMED'],
      [`${b64({ alg: 'ES256' })}.bm90IGpzb24.c2ln`, 'ACCESS_TOKEN_MALFORMED'],
      ['x'.repeat(20_000), 'ACCESS_TOKEN_MALFORMED'],
      [await idp.sign({ exp: now - 3600 }), 'ACCESS_TOKEN_EXPIRED'],
      [await idp.sign({ nbf: now + 3600 }), 'ACCESS_TOKEN_NOT_YET_VALID'],
      [await idp.sign({ iss: 'https://evil.example.org/realms/pollen' }), 'ACCESS_TOKEN_WRONG_ISSUER'],
      [await idp.sign({ iss: undefined }), 'ACCESS_TOKEN_WRONG_ISSUER'],
      [await idp.sign({ aud: 'another-service' }), 'ACCESS_TOKEN_WRONG_AUDIENCE'],
      [await idp.sign({ aud: undefined }), 'ACCESS_TOKEN_WRONG_AUDIENCE'],
      [await idp.sign({}, { key: stranger }), 'ACCESS_TOKEN_UNKNOWN_KEY'],
      // Signed by a key nobody published, claiming the published key's kid.
      [await idp.sign({}, { key: stranger, header: { kid: published.kid } }), 'ACCESS_TOKEN_BAD_SIGNATURE'],
      // A claim changed after signing.
      [
        `${h}.${b64({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), sub: 'root' })}.${good.split('.')[2]}`,
        'ACCESS_TOKEN_BAD_SIGNATURE',
      ],
      [await idp.sign({ exp: undefined }), 'ACCESS_TOKEN_MALFORMED'],
      [await idp.sign({ sub: undefined }), 'ACCESS_TOKEN_MALFORMED'],
      [await idp.sign({ typ: 'ID' }), 'ACCESS_TOKEN_MALFORMED'],
      [await idp.sign({ typ: 'Refresh' }), 'ACCESS_TOKEN_MALFORMED'],
    ];
    for (const [token, code] of cases) {
      const e = await pollenErrorOf(verifier.verify(token));
      expect({ token: token.slice(0, 40), code: e.code }).toEqual({ token: token.slice(0, 40), code });
      expect(e.status).toBe(401);
      expect(e.hint.length).toBeGreaterThan(20);
      const signature = token.split('.')[2];
      if (signature) expect(e.message).not.toContain(signature);
    }
  });

  it('names the issuer and the audience it expected', async () => {
    const { idp, verifier } = await setup();
    const iss = await pollenErrorOf(verifier.verify(await idp.sign({ iss: 'https://other.example.org' })));
    expect(iss.message).toBe(
      `The access token was issued by "https://other.example.org"; this service accepts ${idp.url}`,
    );
    const aud = await pollenErrorOf(verifier.verify(await idp.sign({ aud: 'x' })));
    expect(aud.message).toBe('The access token is for "x", not for this service (pollen)');
    // What a token says is quoted and cut short.
    const long = await pollenErrorOf(verifier.verify(await idp.sign({ iss: `https://${'a'.repeat(5000)}` })));
    expect(long.message.length).toBeLessThan(250);
  });

  it('refuses alg none, HS256 keyed with the public key, and an asymmetric algorithm left out of the list', async () => {
    const { idp, verifier } = await setup({ extra: { algorithms: ['ES256'] } });
    const key = idp.keys[0]!;
    const claims = JSON.parse(Buffer.from((await idp.sign()).split('.')[1]!, 'base64url').toString());
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    const hs256 = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: key.kid })
      .sign(new TextEncoder().encode(JSON.stringify(key.publicJwk)));
    const rs = await issuer({ alg: 'RS256' });
    const rs256 = await rs.sign({ iss: idp.url }, { header: { kid: key.kid } });
    for (const token of [none, hs256, rs256]) {
      const e = await pollenErrorOf(verifier.verify(token));
      expect(e.code).toBe('ACCESS_TOKEN_ALG_NOT_ALLOWED');
    }
    // Refused before any key was fetched.
    expect(idp.jwksFetches()).toBe(0);
  });

  it('refuses a token from a second issuer that uses the same kid', async () => {
    const { c, idp, verifier } = await setup();
    const kid = idp.keys[0]!.kid;
    const other = await issuer({ kid, now: c.now, realm: 'other' });
    expect(other.keys[0]!.kid).toBe(kid);
    expect((await verifier.verify(await idp.sign())).subject).toBe('alice');
    // Its own name: another issuer.
    expect((await pollenErrorOf(verifier.verify(await other.sign()))).code).toBe('ACCESS_TOKEN_WRONG_ISSUER');
    // Claiming the trusted issuer's name: its key is not the one published under that kid.
    const forged = await other.sign({ iss: idp.url });
    expect((await pollenErrorOf(verifier.verify(forged))).code).toBe('ACCESS_TOKEN_BAD_SIGNATURE');
    expect(other.hits.size).toBe(0);
  });
});

describe('createTokenVerifier: the issuer’s keys', () => {
  it('fetches once on a new kid after the issuer rotated, then stops accepting a retired key', async () => {
    const { c, idp, verifier } = await setup({
      deps: { keyRefreshCooldownMs: 10_000, keyMaxAgeMs: 600_000 },
    });
    const old = idp.keys[0]!;
    await verifier.verify(await idp.sign());
    expect(idp.jwksFetches()).toBe(1);
    const next = await idp.addKey({ alg: 'RS256' });
    c.t += 10_000;
    expect((await verifier.verify(await idp.sign({}, { key: next }))).subject).toBe('alice');
    expect(idp.jwksFetches()).toBe(2);
    await verifier.verify(await idp.sign({}, { key: old }));
    expect(idp.jwksFetches()).toBe(2);

    // Verified (and remembered) before the key is retired.
    const oldToken = await idp.sign({}, { key: old, ttl: 3600 });
    await verifier.verify(oldToken);
    idp.retire(old.kid);
    c.t += 600_000;
    // The periodic refresh starts in the background; calls meanwhile use the cached set.
    expect((await verifier.verify(oldToken)).subject).toBe('alice');
    expect(await refusedSoon(() => verifier.verify(oldToken))).toBe('ACCESS_TOKEN_UNKNOWN_KEY');
    expect(idp.jwksFetches()).toBe(3);
  });

  it('fetches at most once per cooldown, however many tokens name unknown kids', async () => {
    const { c, idp, verifier } = await setup({ deps: { keyRefreshCooldownMs: 10_000 } });
    await verifier.verify(await idp.sign());
    const flood = await Promise.all(
      Array.from({ length: 50 }, (_, i) => idp.sign({}, { header: { kid: `random-${i}` } })),
    );
    const codes = async () => {
      const concurrent = await Promise.all(flood.map((t) => pollenErrorOf(verifier.verify(t))));
      for (const t of flood) concurrent.push(await pollenErrorOf(verifier.verify(t)));
      return new Set(concurrent.map((e) => e.code));
    };
    // Within the cooldown of the first fetch: none.
    expect(await codes()).toEqual(new Set(['ACCESS_TOKEN_UNKNOWN_KEY']));
    expect(idp.jwksFetches()).toBe(1);
    // After it: one, shared by the concurrent calls.
    c.t += 10_000;
    expect(await codes()).toEqual(new Set(['ACCESS_TOKEN_UNKNOWN_KEY']));
    expect(idp.jwksFetches()).toBe(2);
    c.t += 9_999;
    await codes();
    expect(idp.jwksFetches()).toBe(2);
  });

  it('keeps verifying with cached keys while the issuer is down; an unknown key is then ISSUER_UNREACHABLE', async () => {
    const { c, idp, verifier } = await setup({ deps: { keyRefreshCooldownMs: 10_000, keyMaxAgeMs: 60_000 } });
    await verifier.verify(await idp.sign());
    idp.down = true;
    c.t += 3_600_000;
    for (let i = 0; i < 3; i++) {
      expect((await verifier.verify(await idp.sign())).subject).toBe('alice');
      await new Promise((r) => setTimeout(r, 5));
    }
    const rotated = await idp.addKey();
    const e = await pollenErrorOf(verifier.verify(await idp.sign({}, { key: rotated })));
    expect(e.code).toBe('ISSUER_UNREACHABLE');
    expect(e.status).toBe(503);
    expect(e.retryable).toBe(true);
    expect(e.message).toContain(idp.url);
    // Back up: after the cooldown the new key is fetched.
    idp.down = false;
    c.t += 10_000;
    expect((await verifier.verify(await idp.sign({}, { key: rotated }))).subject).toBe('alice');
  });

  it('answers ISSUER_UNREACHABLE when no key is cached and the issuer is down, without hammering it', async () => {
    const { c, idp, verifier } = await setup({ deps: { keyRefreshCooldownMs: 10_000 } });
    const token = await idp.sign();
    idp.down = true;
    for (let i = 0; i < 5; i++)
      expect((await pollenErrorOf(verifier.verify(token))).code).toBe('ISSUER_UNREACHABLE');
    expect(idp.discoveryFetches()).toBe(1);
    c.t += 10_000;
    expect((await pollenErrorOf(verifier.verify(token))).code).toBe('ISSUER_UNREACHABLE');
    expect(idp.discoveryFetches()).toBe(2);
    idp.down = false;
    c.t += 10_000;
    expect((await verifier.verify(token)).subject).toBe('alice');
  });

  it('refuses a discovery document that names another issuer', async () => {
    const { idp, verifier } = await setup();
    idp.discoveryIssuer = 'https://elsewhere.example.org/realms/pollen';
    const e = await pollenErrorOf(verifier.verify(await idp.sign()));
    expect(e.code).toBe('ISSUER_MISCONFIGURED');
    expect(e.message).toContain('"https://elsewhere.example.org/realms/pollen"');
    expect(idp.jwksFetches()).toBe(0);
  });
});

describe('createTokenVerifier: what the issuer answers', () => {
  it('tells a provider that is down from one that is misconfigured', async () => {
    const idp = await issuer();
    const token = await idp.sign();
    const discovery = (over: Record<string, unknown>) =>
      JSON.stringify({ issuer: idp.url, jwks_uri: `${idp.url}/jwks`, ...over });
    const cases: Array<[string, (url: string) => Response, string]> = [
      ['discovery 503', () => new Response('', { status: 503 }), 'ISSUER_UNREACHABLE'],
      ['discovery 404', () => new Response('', { status: 404 }), 'ISSUER_MISCONFIGURED'],
      ['discovery not JSON', () => new Response('<html>'), 'ISSUER_MISCONFIGURED'],
      ['discovery too large', () => new Response(' '.repeat(600_000)), 'ISSUER_MISCONFIGURED'],
      [
        'jwks_uri over http',
        () => new Response(discovery({ jwks_uri: 'http://keys.example.org/jwks' })),
        'ISSUER_MISCONFIGURED',
      ],
      [
        'key set without keys',
        (url) => new Response(url.endsWith('/jwks') ? '{"keys": 3}' : discovery({})),
        'ISSUER_MISCONFIGURED',
      ],
    ];
    for (const [name, answer, code] of cases) {
      const fetch = async (url: string | URL | Request) => answer(String(url));
      const verifier = createTokenVerifier(configFor(idp), { fetch: fetch as typeof globalThis.fetch });
      expect([name, (await pollenErrorOf(verifier.verify(token))).code]).toEqual([name, code]);
    }
  });
});

describe('createTokenVerifier: configuration limits', () => {
  it('refuses symmetric algorithms and an unbounded clock skew even when built by hand', async () => {
    const idp = await issuer();
    const config = configFor(idp);
    for (const bad of [
      { ...config, algorithms: ['HS256'] },
      { ...config, algorithms: ['none'] },
      { ...config, algorithms: [] },
      { ...config, clockSkewSeconds: 301 },
      { ...config, clockSkewSeconds: -1 },
    ])
      expect(() => createTokenVerifier(bad)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

/** The code `call` fails with once a background refresh has landed (bounded polling). */
async function refusedSoon(call: () => Promise<unknown>): Promise<string> {
  for (let i = 0; i < 200; i++) {
    try {
      await call();
    } catch (e) {
      return (e as { code: string }).code;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return 'still accepted';
}
