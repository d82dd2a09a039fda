import { execFileSync } from 'node:child_process';
import { createHmac, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { codeOf } from '../../test/support/errors.js';
import {
  nodeIdFromPublicKey,
  parseSshPrivateKey,
  parseSshPublicKey,
  type SshPublicKey,
} from '../pki/openssh.js';
import {
  canonicalString,
  NODE_AUTH_HEADERS as H,
  type NodeSession,
  RequestSigner,
  RequestVerifier,
} from './node-request-auth.js';

const ACTIVATE = '/pollen.v1.Fleet/ActivateNode';
const PULL = '/pollen.v1.Fleet/PullMessages';
const BODY = new Uint8Array([8, 1, 18, 3, 97, 98, 99]);

/** A controllable clock shared by signer and verifier. */
function clock(start = 1_750_000_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

function ecKey(curve: 'P-256' | 'P-384'): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: curve }).privateKey;
}

/** A registry allowing exactly the given keys, by node id. */
function registry(...keys: KeyObject[]) {
  const allowed = new Set(keys.map((k) => nodeIdFromPublicKey(k)));
  return (pub: SshPublicKey) => {
    const id = nodeIdFromPublicKey(pub);
    return allowed.has(id) ? id : undefined;
  };
}

function setup(
  curve: 'P-256' | 'P-384' = 'P-256',
  options: { maxNonces?: number; maxNoncesPerNode?: number } = {},
) {
  const c = clock();
  const key = ecKey(curve);
  const signer = new RequestSigner(key, { now: c.now });
  const verifier = new RequestVerifier({ now: c.now, ...options });
  const isKeyAllowed = registry(key);
  const signed = (headers: Record<string, string>, method = ACTIVATE, body: Uint8Array | string = BODY) =>
    verifier.verifySignedRequest({ method, body, headers, isKeyAllowed });
  return { c, key, signer, verifier, isKeyAllowed, signed };
}

describe('signed requests (ECDSA)', () => {
  it('round-trips with P-256 and P-384 keys made by ssh-keygen', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pollen-auth-'));
    try {
      for (const bits of ['256', '384']) {
        const file = join(dir, `node${bits}`);
        execFileSync('/usr/bin/ssh-keygen', ['-q', '-t', 'ecdsa', '-b', bits, '-N', '', '-f', file]);
        const priv = parseSshPrivateKey(readFileSync(file, 'utf8'));
        const registered = parseSshPublicKey(readFileSync(`${file}.pub`, 'utf8'));
        const signer = new RequestSigner(priv);
        const verifier = new RequestVerifier();
        const headers = signer.signedHeaders(ACTIVATE, BODY);
        expect(Object.keys(headers).sort()).toEqual([H.key, H.nonce, H.signature, H.timestamp].sort());
        // The key header is the base64 field of KEY.pub.
        expect(headers[H.key]).toBe(registered.blob.toString('base64'));
        const result = verifier.verifySignedRequest({
          method: ACTIVATE,
          body: BODY,
          headers,
          isKeyAllowed: (pub) => (pub.blob.equals(registered.blob) ? 'node-from-registry' : undefined),
        });
        expect(result.nodeId).toBe('node-from-registry');
        expect(result.publicKey.type).toBe(bits === '256' ? 'ecdsa-sha2-nistp256' : 'ecdsa-sha2-nistp384');
        expect(signer.nodeId).toBe(nodeIdFromPublicKey(registered));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const curve of ['P-256', 'P-384'] as const) {
    it(`binds method, body, timestamp and nonce (${curve})`, () => {
      const { signer, signed } = setup(curve);
      expect(signed(signer.signedHeaders(ACTIVATE, BODY)).nodeId).toMatch(/^[0-9a-f]{16}$/);

      const h = signer.signedHeaders(ACTIVATE, BODY);
      expect(codeOf(() => signed(h, PULL))).toBe('NODE_AUTH_INVALID');
      expect(codeOf(() => signed(h, ACTIVATE, new Uint8Array([...BODY, 0])))).toBe('NODE_AUTH_INVALID');
      expect(codeOf(() => signed({ ...h, [H.timestamp]: String(Number(h[H.timestamp]) + 1) }))).toBe(
        'NODE_AUTH_INVALID',
      );
      expect(codeOf(() => signed({ ...h, [H.nonce]: randomBytes(16).toString('base64url') }))).toBe(
        'NODE_AUTH_INVALID',
      );
      const sig = Buffer.from(h[H.signature]!, 'base64url');
      sig[5] = sig[5]! ^ 1;
      expect(codeOf(() => signed({ ...h, [H.signature]: sig.toString('base64url') }))).toBe(
        'NODE_AUTH_INVALID',
      );
      // Failed attempts burn nothing: the untouched headers still verify once.
      expect(codeOf(() => signed(h))).toBe('no error');
      expect(codeOf(() => signed(h))).toBe('NODE_AUTH_REPLAY');
    });
  }

  it('hashes string bodies as UTF-8, like the same bytes', () => {
    const { signer, signed } = setup();
    expect(
      codeOf(() => signed(signer.signedHeaders(ACTIVATE, 'héllo'), ACTIVATE, Buffer.from('héllo'))),
    ).toBe('no error');
  });

  it('refuses replays, stale and future timestamps', () => {
    const { c, signer, signed, verifier } = setup();
    const h = signer.signedHeaders(ACTIVATE, BODY);
    signed(h);
    expect(codeOf(() => signed(h))).toBe('NODE_AUTH_REPLAY');
    c.t += 30_000;
    expect(codeOf(() => signed(h))).toBe('NODE_AUTH_REPLAY');
    c.t += 30_001; // now outside the window: refused as stale, and the nonce can be forgotten
    expect(codeOf(() => signed(h))).toBe('NODE_AUTH_STALE');

    const old = signer.signedHeaders(ACTIVATE, BODY);
    c.t += verifier.windowMs + 1;
    expect(codeOf(() => signed(old))).toBe('NODE_AUTH_STALE');
    c.t += 2 * verifier.windowMs + 2;
    const future = signer.signedHeaders(ACTIVATE, BODY);
    c.t -= verifier.windowMs + 1;
    expect(codeOf(() => signed(future))).toBe('NODE_AUTH_STALE');
    c.t += 1; // exactly at the window edge
    expect(codeOf(() => signed(future))).toBe('no error');
  });

  it('refuses unregistered keys, missing headers and malformed values', () => {
    const { c, signer, signed } = setup();
    const stranger = new RequestSigner(ecKey('P-384'), { now: c.now });
    expect(codeOf(() => signed(stranger.signedHeaders(ACTIVATE, BODY)))).toBe('NODE_NOT_REGISTERED');
    expect(codeOf(() => signed({}))).toBe('NODE_AUTH_MISSING');
    const h = signer.signedHeaders(ACTIVATE, BODY);
    for (const name of [H.key, H.timestamp, H.nonce, H.signature]) {
      const { [name]: _, ...rest } = h;
      expect(
        codeOf(() => signed(rest)),
        name,
      ).toBe('NODE_AUTH_MISSING');
    }
    const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
    for (const [name, value] of [
      [H.timestamp, '12e3'],
      [H.timestamp, '-5'],
      [H.nonce, 'short'],
      [H.signature, 'not base64url!'],
      [H.key, 'AAAA'],
      [H.key, ed.toString('base64')],
    ] as const)
      expect(
        codeOf(() => signed({ ...h, [name]: value })),
        `${name}=${value}`,
      ).toBe('NODE_AUTH_INVALID');
    expect(codeOf(() => signed(h, `${ACTIVATE}\nx`))).toBe('NODE_AUTH_INVALID');
    expect(() => signer.signedHeaders(`${ACTIVATE}\n`, BODY)).toThrow();
  });

  it('refuses a signature made by another registered key for this key header', () => {
    const { c, key, verifier } = setup();
    const other = ecKey('P-256');
    const isKeyAllowed = registry(key, other);
    const mine = new RequestSigner(key, { now: c.now }).signedHeaders(ACTIVATE, BODY);
    const theirs = new RequestSigner(other, { now: c.now }).signedHeaders(ACTIVATE, BODY);
    const mixed = { ...theirs, [H.key]: mine[H.key]! };
    expect(
      codeOf(() =>
        verifier.verifySignedRequest({ method: ACTIVATE, body: BODY, headers: mixed, isKeyAllowed }),
      ),
    ).toBe('NODE_AUTH_INVALID');
  });
});

describe('sessions (HMAC)', () => {
  function withSession(curve: 'P-256' | 'P-384' = 'P-384') {
    const s = setup(curve);
    const { nodeId } = s.signed(s.signer.signedHeaders(ACTIVATE, BODY));
    const session = s.verifier.openSession(nodeId);
    const call = (headers: Record<string, string>, method = PULL, body: Uint8Array | string = BODY) =>
      s.verifier.verifySessionRequest({ method, body, headers });
    return { ...s, nodeId, session, call };
  }

  it('opens a session after a signed request and verifies MACs bound to each request', () => {
    const { c, signer, session, call, nodeId, verifier } = withSession();
    expect(session.sessionId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(session.secret.length).toBe(32);
    expect(session.nodeId).toBe(nodeId);
    expect(session.expiresAt).toBe(c.t + verifier.sessionTtlMs);

    const h = signer.sessionHeaders(session, PULL, BODY);
    expect(Object.keys(h).sort()).toEqual([H.mac, H.nonce, H.session, H.timestamp].sort());
    const expectedMac = createHmac('sha256', session.secret)
      .update(canonicalString(PULL, BODY, h[H.timestamp]!, h[H.nonce]!))
      .digest('base64url');
    expect(h[H.mac]).toBe(expectedMac);
    expect(call(h)).toBe(nodeId);
    expect(codeOf(() => call(h))).toBe('NODE_AUTH_REPLAY');

    const t = signer.sessionHeaders(session, PULL, BODY);
    expect(codeOf(() => call(t, ACTIVATE))).toBe('NODE_AUTH_INVALID');
    expect(codeOf(() => call(t, PULL, 'other body'))).toBe('NODE_AUTH_INVALID');
    expect(codeOf(() => call({ ...t, [H.timestamp]: String(c.t - 1) }))).toBe('NODE_AUTH_INVALID');
    expect(codeOf(() => call({ ...t, [H.nonce]: randomBytes(16).toString('base64url') }))).toBe(
      'NODE_AUTH_INVALID',
    );
    expect(call(t)).toBe(nodeId);
  });

  it('refuses a MAC made with the wrong secret, and unknown or malformed sessions', () => {
    const { signer, session, call } = withSession('P-256');
    const forged: NodeSession = { ...session, secret: randomBytes(32) };
    expect(codeOf(() => call(signer.sessionHeaders(forged, PULL, BODY)))).toBe('NODE_AUTH_INVALID');
    const unknown = { ...session, sessionId: randomBytes(16).toString('base64url') };
    expect(codeOf(() => call(signer.sessionHeaders(unknown, PULL, BODY)))).toBe('NODE_SESSION_EXPIRED');
    const h = signer.sessionHeaders(session, PULL, BODY);
    expect(codeOf(() => call({ ...h, [H.mac]: 'abc' }))).toBe('NODE_AUTH_INVALID');
    expect(codeOf(() => call({ ...h, [H.session]: 'x' }))).toBe('NODE_AUTH_INVALID');
    const { [H.mac]: _, ...noMac } = h;
    expect(codeOf(() => call(noMac))).toBe('NODE_AUTH_MISSING');
    expect(codeOf(() => call({}))).toBe('NODE_AUTH_MISSING');
    expect(call(h)).toBe(session.nodeId);
  });

  it('refuses an expired session and stale session requests', () => {
    const { c, signer, session, call, verifier } = withSession();
    const stale = signer.sessionHeaders(session, PULL, BODY);
    c.t += verifier.windowMs + 1;
    expect(codeOf(() => call(stale))).toBe('NODE_AUTH_STALE');
    c.t = session.expiresAt;
    expect(codeOf(() => call(signer.sessionHeaders(session, PULL, BODY)))).toBe('NODE_SESSION_EXPIRED');
    expect(verifier.sessionCount).toBe(0);
  });

  it('revokes every session of a node at once, leaving other nodes alone', () => {
    const a = withSession();
    const second = a.verifier.openSession(a.nodeId);
    const otherKey = ecKey('P-256');
    const other = new RequestSigner(otherKey, { now: a.c.now });
    const otherSession = a.verifier.openSession(other.nodeId);
    expect(a.verifier.revokeSessionsFor(a.nodeId)).toBe(2);
    for (const s of [a.session, second])
      expect(codeOf(() => a.call(a.signer.sessionHeaders(s, PULL, BODY)))).toBe('NODE_SESSION_EXPIRED');
    expect(a.call(other.sessionHeaders(otherSession, PULL, BODY))).toBe(other.nodeId);
    expect(a.verifier.revokeSessionsFor(a.nodeId)).toBe(0);
  });

  it('returns the signed nonce and timestamp for a replay store, and the identity that opened a session', () => {
    const { c, signer, signed, verifier } = setup();
    const h = signer.signedHeaders(ACTIVATE, BODY);
    const v = signed(h);
    expect(v).toMatchObject({ nonce: h[H.nonce], timestamp: c.t });
    const atSite = verifier.openSession(v.nodeId, 'site-1');
    const anywhere = verifier.openSession(v.nodeId);
    const req = (session: NodeSession) => ({
      method: PULL,
      body: BODY,
      headers: signer.sessionHeaders(session, PULL, BODY),
    });
    expect(verifier.verifySession(req(atSite))).toEqual({ nodeId: v.nodeId, identity: 'site-1' });
    expect(verifier.verifySession(req(anywhere))).toEqual({ nodeId: v.nodeId, identity: undefined });
  });

  it('keeps only the newest sessions of a node', () => {
    const { verifier, nodeId, signer, call } = withSession();
    const sessions = Array.from({ length: verifier.maxSessionsPerNode + 2 }, () =>
      verifier.openSession(nodeId),
    );
    expect(codeOf(() => call(signer.sessionHeaders(sessions[0]!, PULL, BODY)))).toBe('NODE_SESSION_EXPIRED');
    expect(call(signer.sessionHeaders(sessions.at(-1)!, PULL, BODY))).toBe(nodeId);
  });
});

describe('replay cache', () => {
  it('is bounded: refuses new requests when full and accepts again once nonces expire', () => {
    const { c, signer, signed, verifier } = setup('P-256', { maxNonces: 3, maxNoncesPerNode: 3 });
    for (let i = 0; i < 3; i++) signed(signer.signedHeaders(ACTIVATE, BODY));
    expect(verifier.nonceCount).toBe(3);
    expect(codeOf(() => signed(signer.signedHeaders(ACTIVATE, BODY)))).toBe('RATE_LIMITED');
    expect(verifier.nonceCount).toBe(3);
    c.t += verifier.windowMs + 1_001; // nonces are filed in 1 s buckets (windowMs / 60)
    signed(signer.signedHeaders(ACTIVATE, BODY));
    expect(verifier.nonceCount).toBe(1);
  });

  it('gives each node its own share: a flooding node is refused alone', () => {
    const c = clock();
    const verifier = new RequestVerifier({ now: c.now, maxNonces: 10, maxNoncesPerNode: 3 });
    const sessions = ['flood', 'calm'].map((n) => ({ n, s: verifier.openSession(n), k: ecKey('P-256') }));
    const call = (i: number) => {
      const { s, k } = sessions[i]!;
      return verifier.verifySessionRequest({
        method: PULL,
        body: BODY,
        headers: new RequestSigner(k, { now: c.now }).sessionHeaders(s, PULL, BODY),
      });
    };
    for (let i = 0; i < 3; i++) expect(call(0)).toBe('flood');
    expect(codeOf(() => call(0))).toBe('RATE_LIMITED');
    expect(call(1)).toBe('calm');
    expect(verifier.nonceCount).toBe(4);
    c.t += verifier.windowMs + 1_001;
    expect(call(0)).toBe('flood');
  });

  it('forgets nonces once their timestamp leaves the window', () => {
    const { c, signer, verifier } = setup();
    const s = verifier.openSession(signer.nodeId);
    for (let i = 0; i < 50; i++) {
      verifier.verifySessionRequest({
        method: PULL,
        body: BODY,
        headers: signer.sessionHeaders(s, PULL, BODY),
      });
      c.t += 100;
    }
    expect(verifier.nonceCount).toBe(50);
    c.t += verifier.windowMs - 3_000; // only the first 1 s bucket (10 nonces) is wholly stale
    verifier.verifySessionRequest({
      method: PULL,
      body: BODY,
      headers: signer.sessionHeaders(s, PULL, BODY),
    });
    expect(verifier.nonceCount).toBe(41);
    c.t += 3_000 + 1_001;
    verifier.verifySessionRequest({
      method: PULL,
      body: BODY,
      headers: signer.sessionHeaders(s, PULL, BODY),
    });
    expect(verifier.nonceCount).toBe(2);
  });

  it('treats the same nonce with another timestamp as another request, and drops stale buckets', () => {
    const c = clock();
    const key = ecKey('P-256');
    const verifier = new RequestVerifier({ now: c.now, maxNonces: 2, maxNoncesPerNode: 2 });
    const s = verifier.openSession('n');
    const at = (ms: number) => new RequestSigner(key, { now: () => c.t + ms }).sessionHeaders(s, PULL, BODY);
    const call = (h: Record<string, string>) =>
      verifier.verifySessionRequest({ method: PULL, body: BODY, headers: h });
    const future = at(+59_000);
    call(future);
    const past = at(-59_000);
    call(past);
    expect(codeOf(() => call(at(0)))).toBe('RATE_LIMITED');
    c.t += 2_001; // the past request is stale now (plus its 1 s bucket): it goes, the future one stays
    expect(call(at(0))).toBe('n');
    expect(codeOf(() => call(future))).toBe('NODE_AUTH_REPLAY');
    expect(verifier.nonceCount).toBe(2);
  });
});
