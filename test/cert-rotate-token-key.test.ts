import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadPolicy } from '../src/enrollment/policy-load.js';
import {
  decodeTokenHeader,
  issueToken,
  loadTokenSigner,
  loadTokenVerifier,
  verifyToken,
} from '../src/enrollment/token.js';
import { readRetiredTokenKeys } from '../src/enrollment/token-retired.js';
import { rotateTokenKey } from '../src/enrollment/token-rotate.js';
import { initCa } from '../src/pki/ca.js';
import {
  type LiveCertService,
  opensslCsr,
  startLiveCertService,
  testPolicy,
} from './support/cert-service.js';
import { pollenInProcess, tempDir } from './support/cli.js';
import { codeOf } from './support/errors.js';

// Token key rotation: new tokens get the new key, tokens of the old one verify by their kid
// until they expire, and a running Certificate Service takes the new key up by itself.

const t = tempDir('pollen-rotate-token-');
afterAll(t.cleanup);

const policy = loadPolicy();
const HOUR = 3_600_000;

describe('rotateTokenKey (in-process)', () => {
  let caDir: string;
  beforeAll(async () => {
    caDir = join(t.dir, 'ca');
    await initCa({ name: 'Rotate Test', dir: caDir });
  });

  it('keeps old tokens valid by kid, signs new ones with the new key, and survives rotating twice', () => {
    const now = new Date();
    const first = loadTokenSigner(caDir);
    const oldToken = issueToken(first, { subject: 'site-a', policy, now }).token;
    const r1 = rotateTokenKey(caDir, { now });
    const second = loadTokenSigner(caDir);
    expect(r1.previousKid).toBe(first.kid);
    expect(second.kid).toBe(r1.kid);
    expect(second.kid).not.toBe(first.kid);
    const midToken = issueToken(second, { subject: 'site-b', policy, now }).token;
    const r2 = rotateTokenKey(caDir, { now });
    expect(r2.accepted).toEqual([r2.kid, second.kid, first.kid]);
    const newToken = issueToken(loadTokenSigner(caDir), { subject: 'site-c', policy, now }).token;
    expect(decodeTokenHeader(newToken).kid).toBe(r2.kid);

    const v = loadTokenVerifier(caDir, now);
    for (const [tok, sub] of [
      [oldToken, 'site-a'],
      [midToken, 'site-b'],
      [newToken, 'site-c'],
    ] as const)
      expect(verifyToken(tok, { keys: v.keys, issuer: v.issuer, now }).sub).toBe(sub);
    // Only public parts are kept for retired keys.
    expect(readFileSync(join(caDir, 'token-keys.json'), 'utf8')).not.toContain('PRIVATE');
  });

  it('refuses an old-key token after its expiry, and drops the old key after the overlap', () => {
    const dir = join(t.dir, 'ca');
    const now = new Date();
    const signer = loadTokenSigner(dir);
    const token = issueToken(signer, { subject: 'site-d', policy, now }).token; // valid 7 days
    rotateTokenKey(dir, { now, overlapMs: 10 * 24 * HOUR });
    const later = new Date(now.getTime() + 8 * 24 * HOUR);
    expect(codeOf(() => verifyToken(token, { keys: loadTokenVerifier(dir, later).keys, now: later }))).toBe(
      'TOKEN_EXPIRED',
    );
    const afterOverlap = new Date(now.getTime() + 11 * 24 * HOUR);
    expect(loadTokenVerifier(dir, afterOverlap).keys.has(signer.kid)).toBe(false);
    // The next rotation after the overlap removes the key from the folder.
    const r = rotateTokenKey(dir, { now: afterOverlap });
    expect(r.dropped).toContain(signer.kid);
    expect(readRetiredTokenKeys(dir).retired.map((k) => k.kid)).not.toContain(signer.kid);
  });

  it('pollen cert rotate token-key --json prints one document; a folder without a CA is refused', async () => {
    const ok = await pollenInProcess([
      'cert',
      'rotate',
      'token-key',
      '-c',
      caDir,
      '--overlap',
      '2d',
      '--json',
    ]);
    expect(ok.code).toBe(0);
    const doc = JSON.parse(ok.stdout);
    expect(doc).toMatchObject({ kid: loadTokenSigner(caDir).kid, caDir });
    expect(Date.parse(doc.dropAfter) - Date.now()).toBeGreaterThan(47 * HOUR);

    const bad = await pollenInProcess(['cert', 'rotate', 'token-key', '-c', join(t.dir, 'nope'), '--json']);
    expect(bad.code).not.toBe(0);
    expect(JSON.parse(bad.stdout).error.code).toBe('CA_NOT_FOUND');
    const dur = await pollenInProcess([
      'cert',
      'rotate',
      'token-key',
      '-c',
      caDir,
      '--overlap',
      'soon',
      '--json',
    ]);
    expect(JSON.parse(dur.stdout).error.code).toBe('INVALID_ARGUMENT');
  });
});

describe('a running Certificate Service during a token key rotation', () => {
  let cs: LiveCertService;
  beforeAll(async () => {
    cs = await startLiveCertService(join(t.dir, 'live'), {
      name: 'Rotate Live',
      apiKey: 'pollen_rotate_test_key_0123456789abcdefghijklmnopq',
      policy: testPolicy('rotate-live', ['{ name: "all", match: {}, action: approve }']),
      reloadCheckMs: 20,
    });
  });
  afterAll(() => cs.close());

  it('enrolls with tokens of the old key and of the new one, and issues new tokens with the new key', async () => {
    const oldToken = cs.token('before-1'); // signed with the key the service started with
    expect((await cs.enroll('before-0')).status).toBe(200);
    const r = rotateTokenKey(cs.caDir);
    const issued = async () =>
      (await cs.post('/v1/tokens', { subjects: ['after-1'] }, true)).json.tokens[0].token as string;
    await vi.waitFor(async () => expect(decodeTokenHeader(await issued()).kid).toBe(r.kid), {
      timeout: 5_000,
      interval: 20,
    });
    const csr = (cn: string) => opensslCsr(join(t.dir, 'live'), cn).csr;
    const old = await cs.post('/v1/enroll', { token: oldToken, csr: csr('before-1') });
    expect(old.status).toBe(200);
    const fresh = await cs.post('/v1/enroll', { token: await issued(), csr: csr('after-1') });
    expect(fresh.status).toBe(200);
  });
});
