import {
  createHmac,
  createPrivateKey,
  createSecretKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
} from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeOf } from '../../test/support/errors.js';
import { makeCaFolder } from '../../test/support/fixtures.js';
import { certificateFingerprint } from '../pki/fingerprint.js';
import { loadPolicy, parsePolicy } from './policy-load.js';
import {
  decodeToken,
  decodeTokenHeader,
  issueToken,
  issueTokens,
  loadTokenSigner,
  loadTokenVerifier,
  TOKEN_AUDIENCE,
  TOKEN_TYPE,
  type TokenSigner,
  verifyToken,
} from './token.js';

const NOW = new Date('2025-01-02T10:00:00Z');
const NOW_S = NOW.getTime() / 1000;
const DAY = 86_400;

let dir: string;
let caDir: string;
let signer: TokenSigner;
const policy = loadPolicy();

const keysOf = (s: TokenSigner) => new Map<string, KeyObject>([[s.kid, s.publicKey]]);

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return 'no error';
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-token-'));
  caDir = join(dir, 'ca');
  makeCaFolder(caDir);
  signer = loadTokenSigner(caDir);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('loadTokenSigner', () => {
  it('loads the token key, issuer and root fingerprint of a CA folder', async () => {
    expect(signer.issuer).toBe('pollen:demo-project');
    expect(signer.rootFingerprint).toBe(
      certificateFingerprint(readFileSync(join(caDir, 'rootCA.pem'), 'utf8')),
    );
    expect(signer.publicJwk).toMatchObject({ kty: 'EC', crv: 'P-256' });
    expect(signer.kid).toBe(await calculateJwkThumbprint(signer.publicJwk, 'sha256'));
    expect(signer.privateKey.type).toBe('private');
  });

  it('never uses the root CA key', () => {
    const rootKey = createPrivateKey(readFileSync(join(caDir, 'rootCA.key')));
    const tok = issueToken(signer, { subject: 'hospital-1', policy, now: NOW }).token;
    expect(signer.privateKey.equals(rootKey)).toBe(false);
    // The root CA's key does not verify the token; the token key does.
    expect(codeOf(() => verifyToken(tok, { keys: new Map([[signer.kid, rootKey]]), now: NOW }))).toBe(
      'TOKEN_INVALID',
    );
    expect(verifyToken(tok, { keys: keysOf(signer), now: NOW }).sub).toBe('hospital-1');
  });

  it('refuses missing folders and files with CA_NOT_FOUND naming the path', () => {
    const missing = join(dir, 'nope');
    expect(codeOf(() => loadTokenSigner(missing))).toBe('CA_NOT_FOUND');
    expect(messageOf(() => loadTokenSigner(missing))).toContain(missing);
    for (const file of ['token.key', 'rootCA.pem', 'ca.json']) {
      const partial = join(dir, `partial-${file}`);
      makeCaFolder(partial);
      unlinkSync(join(partial, file));
      expect(
        codeOf(() => loadTokenSigner(partial)),
        file,
      ).toBe('CA_NOT_FOUND');
      expect(messageOf(() => loadTokenSigner(partial))).toContain(join(partial, file));
    }
  });

  it('refuses a token key that is not P-256', () => {
    const bad = join(dir, 'p384');
    makeCaFolder(bad);
    const k = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    writeFileSync(join(bad, 'token.key'), k);
    expect(codeOf(() => loadTokenSigner(bad))).toBe('KEY_INVALID');
  });

  it('loadTokenVerifier works from token.pub alone', () => {
    const pubOnly = join(dir, 'pub-only');
    makeCaFolder(pubOnly);
    const s = loadTokenSigner(pubOnly);
    writeFileSync(join(pubOnly, 'token.pub'), s.publicKey.export({ type: 'spki', format: 'pem' }));
    unlinkSync(join(pubOnly, 'token.key'));
    const v = loadTokenVerifier(pubOnly);
    expect([...v.keys.keys()]).toEqual([s.kid]);
    expect(v.issuer).toBe(s.issuer);
    const tok = issueToken(s, { subject: 'hospital-1', policy, now: NOW }).token;
    expect(verifyToken(tok, { keys: v.keys, issuer: v.issuer, now: NOW }).sub).toBe('hospital-1');
  });
});

describe('issueToken', () => {
  it('makes an ES256 JWT with the documented header and claims, which jose verifies', async () => {
    const { token, claims } = issueToken(signer, { subject: 'hospital-1', policy, now: NOW });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'ES256', kid: signer.kid, typ: TOKEN_TYPE });
    expect(claims).toEqual({
      jti: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      sub: 'hospital-1',
      iss: 'pollen:demo-project',
      aud: 'pollen-cert-service',
      iat: NOW_S,
      nbf: NOW_S,
      exp: NOW_S + 7 * DAY,
      pollen: {
        subject_type: 'client',
        roles: [],
        max_uses: 1,
        policy: { project: 'pollen-default', version: '1.0', sha256: policy.sha256 },
        root_ca_fingerprint: signer.rootFingerprint,
      },
    });
    const key = await importJWK(signer.publicJwk, 'ES256');
    const { payload, protectedHeader } = await jwtVerify(token, key, {
      algorithms: ['ES256'],
      typ: TOKEN_TYPE,
      audience: TOKEN_AUDIENCE,
      issuer: signer.issuer,
      currentDate: NOW,
    });
    expect(payload).toEqual(claims);
    expect(protectedHeader.kid).toBe(signer.kid);
    expect(decodeToken(token)).toEqual(claims);
    expect(decodeTokenHeader(token)).toEqual({ alg: 'ES256', kid: signer.kid, typ: TOKEN_TYPE });
  });

  it('carries the subject type, role, max_uses and the policy hash', () => {
    const custom = parsePolicy(
      `metadata: {project: fed, version: "2.1"}
token: {validity: 12h, max_uses: 5}
site: {name_pattern: "hospital-*"}
user: {allowed_roles: [member, org_admin], default_role: member}
approval: {rules: [{name: all, match: {}, action: approve}]}
`,
      'custom.yaml',
    );
    const relay = issueToken(signer, {
      subject: 'hospital-relay',
      type: 'relay',
      policy: custom,
      now: NOW,
    }).claims;
    expect(relay.pollen).toMatchObject({ subject_type: 'relay', roles: [], max_uses: 5 });
    expect(relay.pollen.policy).toEqual({ project: 'fed', version: '2.1', sha256: custom.sha256 });
    expect(relay.exp - relay.iat).toBe(12 * 3600);
    const user = issueToken(signer, {
      subject: 'alice@example.com',
      type: 'user',
      policy: custom,
      now: NOW,
    }).claims;
    expect(user.pollen).toMatchObject({ subject_type: 'user', roles: ['member'] });
    const admin = issueToken(signer, {
      subject: 'bob@example.com',
      type: 'user',
      role: 'org_admin',
      policy: custom,
      now: NOW,
    }).claims;
    expect(admin.pollen.roles).toEqual(['org_admin']);
    // The policy's site pattern and roles are enforced.
    expect(codeOf(() => issueToken(signer, { subject: 'clinic-1', policy: custom, now: NOW }))).toBe(
      'POLICY_SITE_NAME',
    );
    expect(
      codeOf(() =>
        issueToken(signer, { subject: 'c@example.com', type: 'user', role: 'lead', policy: custom }),
      ),
    ).toBe('POLICY_ROLE');
    // Users are not sites: the site pattern does not apply to them.
    expect(issueToken(signer, { subject: 'x@clinic.org', type: 'user', policy: custom }).claims.sub).toBe(
      'x@clinic.org',
    );
  });

  it('defaults users to the policy default role (lead)', () => {
    const c = issueToken(signer, { subject: 'admin@example.com', type: 'user', policy, now: NOW }).claims;
    expect(c.pollen.roles).toEqual(['lead']);
  });

  it('refuses bad subjects and a role on a site token', () => {
    for (const name of ['', '../etc', 'a/b', 'a b', '-x', 'x'.repeat(65), 'a..b', 'ümlaut'])
      expect(
        codeOf(() => issueToken(signer, { subject: name, policy })),
        name,
      ).toBe('INVALID_ARGUMENT');
    for (const name of ['alice', 'alice@', '@example.com', 'a b@example.com', 'a/b@example.com'])
      expect(
        codeOf(() => issueToken(signer, { subject: name, type: 'user', policy })),
        name,
      ).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => issueToken(signer, { subject: 'hospital-1', role: 'lead', policy }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(codeOf(() => issueToken(signer, { subject: 'h', type: 'robot' as never, policy }))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});

describe('issueTokens', () => {
  it('issues a batch with unique ids and reports progress', async () => {
    const names = Array.from({ length: 2500 }, (_, i) => `site-${i + 1}`);
    const seen: number[] = [];
    const out = await issueTokens(signer, names, { policy, now: NOW }, (done) => seen.push(done));
    expect(out.map((t) => t.claims.sub)).toEqual(names);
    expect(new Set(out.map((t) => t.claims.jti)).size).toBe(names.length);
    expect(seen).toEqual([1000, 2000, 2500]);
    expect(verifyToken(out[1234]!.token, { keys: keysOf(signer), now: NOW }).sub).toBe('site-1235');
  });

  it('checks every subject before signing any, refusing duplicates', async () => {
    await expect(issueTokens(signer, ['a-1', 'a-2', 'a-1'], { policy })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(issueTokens(signer, ['a-1', 'bad/name'], { policy })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('signs 10,000 tokens quickly', async () => {
    const names = Array.from({ length: 10_000 }, (_, i) => `client-${i + 1}`);
    const t0 = performance.now();
    const out = await issueTokens(signer, names, { policy });
    const ms = performance.now() - t0;
    console.log(`issueTokens: 10,000 tokens in ${ms.toFixed(0)} ms (${Math.round(10_000 / (ms / 1000))}/s)`);
    expect(out).toHaveLength(10_000);
  });
});

describe('verifyToken', () => {
  const issued = () => issueToken(signer, { subject: 'hospital-1', policy, now: NOW });
  const opts = () => ({ keys: keysOf(signer), now: NOW });

  it('accepts a fresh token (map or function key lookup)', () => {
    const { token, claims } = issued();
    expect(verifyToken(token, opts())).toEqual(claims);
    expect(
      verifyToken(token, { keys: (kid) => (kid === signer.kid ? signer.publicKey : undefined), now: NOW }),
    ).toEqual(claims);
    expect(verifyToken(token, { ...opts(), issuer: 'pollen:demo-project' }).sub).toBe('hospital-1');
    // A private key works as the verification key too.
    expect(verifyToken(token, { keys: new Map([[signer.kid, signer.privateKey]]), now: NOW }).sub).toBe(
      'hospital-1',
    );
  });

  it('expired → TOKEN_EXPIRED; inside the clock tolerance it still passes', () => {
    const { token } = issued();
    const exp = NOW_S + 7 * DAY;
    const at = (s: number) => new Date(s * 1000);
    expect(codeOf(() => verifyToken(token, { ...opts(), now: at(exp + 61) }))).toBe('TOKEN_EXPIRED');
    expect(codeOf(() => verifyToken(token, { ...opts(), now: at(exp), clockToleranceSec: 0 }))).toBe(
      'TOKEN_EXPIRED',
    );
    expect(verifyToken(token, { ...opts(), now: at(exp + 30) }).sub).toBe('hospital-1');
    expect(verifyToken(token, { ...opts(), now: at(exp - 1), clockToleranceSec: 0 }).sub).toBe('hospital-1');
  });

  it('nbf in the future → TOKEN_NOT_YET_VALID', () => {
    const { token } = issued();
    expect(codeOf(() => verifyToken(token, { ...opts(), now: new Date(NOW.getTime() - 120_000) }))).toBe(
      'TOKEN_NOT_YET_VALID',
    );
    expect(verifyToken(token, { ...opts(), now: new Date(NOW.getTime() - 30_000) }).sub).toBe('hospital-1');
  });

  it('tampered payload, header or signature → TOKEN_INVALID with one uniform message', () => {
    const { token, claims } = issued();
    const [h, , s] = token.split('.') as [string, string, string];
    const forged = [
      `${h}.${b64({ ...claims, sub: 'hospital-2' })}.${s}`,
      `${h}.${b64({ ...claims, pollen: { ...claims.pollen, max_uses: 1000 } })}.${s}`,
      `${h}.${b64({ ...claims, pollen: { ...claims.pollen, subject_type: 'server' } })}.${s}`,
      `${h}.${b64({ ...claims, exp: claims.exp + DAY })}.${s}`,
      `${b64({ alg: 'ES256', kid: signer.kid, typ: 'JWT' })}.${token.split('.')[1]}.${s}`,
      `${token.slice(0, -2)}${token.endsWith('AA') ? 'AB' : 'AA'}`,
      `${token}.x`,
      token.replace(/\.[^.]*$/, '.'),
      'not a token',
      '',
    ];
    for (const t of forged) {
      expect(
        codeOf(() => verifyToken(t, opts())),
        t.slice(0, 40),
      ).toBe('TOKEN_INVALID');
      expect(messageOf(() => verifyToken(t, opts()))).toBe('The enrollment token is invalid');
    }
  });

  it('a bad signature is reported as invalid even when the token is also expired (no leak)', () => {
    const { token, claims } = issued();
    const [h, , s] = token.split('.') as [string, string, string];
    const t = `${h}.${b64({ ...claims, sub: 'other' })}.${s}`;
    expect(codeOf(() => verifyToken(t, { ...opts(), now: new Date(Date.UTC(2030, 0, 1)) }))).toBe(
      'TOKEN_INVALID',
    );
  });

  it('wrong key or unknown kid → TOKEN_INVALID', () => {
    const { token } = issued();
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    expect(codeOf(() => verifyToken(token, { keys: new Map([[signer.kid, other]]), now: NOW }))).toBe(
      'TOKEN_INVALID',
    );
    expect(
      codeOf(() => verifyToken(token, { keys: new Map([['another-kid', signer.publicKey]]), now: NOW })),
    ).toBe('TOKEN_INVALID');
    expect(codeOf(() => verifyToken(token, { keys: () => undefined, now: NOW }))).toBe('TOKEN_INVALID');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    expect(codeOf(() => verifyToken(token, { keys: new Map([[signer.kid, p384]]), now: NOW }))).toBe(
      'TOKEN_INVALID',
    );
  });

  it('wrong audience or issuer → TOKEN_INVALID', () => {
    const { token } = issued();
    expect(codeOf(() => verifyToken(token, { ...opts(), audience: 'pollen-superlink' }))).toBe(
      'TOKEN_INVALID',
    );
    expect(codeOf(() => verifyToken(token, { ...opts(), issuer: 'pollen:other' }))).toBe('TOKEN_INVALID');
  });

  it('refuses alg none', () => {
    const { claims } = issued();
    for (const header of [
      { alg: 'none', kid: signer.kid, typ: TOKEN_TYPE },
      { alg: 'none', typ: TOKEN_TYPE },
      { alg: 'NONE', kid: signer.kid, typ: TOKEN_TYPE },
    ]) {
      const t = `${b64(header)}.${b64(claims)}.`;
      expect(codeOf(() => verifyToken(t, opts()))).toBe('TOKEN_INVALID');
      expect(decodeToken(t)).toEqual(claims); // decoding alone does not care
    }
  });

  it('refuses HS256 key confusion (public key bytes used as an HMAC secret)', () => {
    const { claims } = issued();
    const header = b64({ alg: 'HS256', kid: signer.kid, typ: TOKEN_TYPE });
    const body = b64(claims);
    for (const secret of [
      signer.publicKey.export({ type: 'spki', format: 'pem' }),
      signer.publicKey.export({ type: 'spki', format: 'der' }),
    ]) {
      const mac = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
      expect(codeOf(() => verifyToken(`${header}.${body}.${mac}`, opts()))).toBe('TOKEN_INVALID');
    }
    // Even if a verifier were handed a secret key under that kid, ES256 with a P-256 key is required.
    const secretKey = createSecretKey(Buffer.from('secret'));
    const mac = createHmac('sha256', 'secret').update(`${header}.${body}`).digest('base64url');
    expect(
      codeOf(() =>
        verifyToken(`${header}.${body}.${mac}`, { keys: new Map([[signer.kid, secretKey]]), now: NOW }),
      ),
    ).toBe('TOKEN_INVALID');
  });

  it('refuses other algorithms, DER signatures and unexpected header fields', async () => {
    const { claims } = issued();
    const body = b64(claims);
    const es = (header: object, dsaEncoding: 'ieee-p1363' | 'der' = 'ieee-p1363') => {
      const input = `${b64(header)}.${body}`;
      const sig = sign('sha256', Buffer.from(input), { key: signer.privateKey, dsaEncoding });
      return `${input}.${sig.toString('base64url')}`;
    };
    const good = { alg: 'ES256', kid: signer.kid, typ: TOKEN_TYPE };
    expect(verifyToken(es(good), opts()).sub).toBe('hospital-1'); // the control
    expect(codeOf(() => verifyToken(es(good, 'der'), opts()))).toBe('TOKEN_INVALID');
    expect(codeOf(() => verifyToken(es({ ...good, alg: 'ES384' }), opts()))).toBe('TOKEN_INVALID');
    expect(codeOf(() => verifyToken(es({ ...good, typ: 'JWT' }), opts()))).toBe('TOKEN_INVALID');
    expect(codeOf(() => verifyToken(es({ alg: 'ES256', typ: TOKEN_TYPE }), opts()))).toBe('TOKEN_INVALID');
    expect(codeOf(() => verifyToken(es({ ...good, jku: 'https://evil.example/jwks' }), opts()))).toBe(
      'TOKEN_INVALID',
    );
    expect(codeOf(() => verifyToken(es({ ...good, crit: ['exp'] }), opts()))).toBe('TOKEN_INVALID');
    // A token jose signs with the same key and header verifies: the format is standard.
    const key = await importJWK(
      { ...(signer.privateKey.export({ format: 'jwk' }) as object), alg: 'ES256' } as never,
      'ES256',
    );
    const viaJose = await new SignJWT(claims as never).setProtectedHeader(good).sign(key);
    expect(verifyToken(viaJose, opts())).toEqual(claims);
  });

  it('decodeToken reads without verifying; malformed → TOKEN_INVALID', () => {
    const { token, claims } = issued();
    expect(decodeToken(token)).toEqual(claims);
    expect(decodeToken(` ${token}\n`)).toEqual(claims);
    for (const bad of ['', 'a.b.c', 'x', `${b64({ alg: 'ES256' })}.${b64({ sub: 'x' })}.`, `${token}.more`])
      expect(
        codeOf(() => decodeToken(bad)),
        bad,
      ).toBe('TOKEN_INVALID');
  });
});
