import { copyFileSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initCa, loadCa } from '../src/pki/ca.js';
import { rotateIntermediate } from '../src/pki/ca-rotate.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { verifyChain } from '../src/pki/verify.js';
import { type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { pollenInProcess, tempDir } from './support/cli.js';

// The intermediate CA is rotated with the offline root: the old and the new one overlap in the
// chain, what the old one signed stays valid until it expires, new certificates use the new one.

const t = tempDir('pollen-rotate-inter-');
afterAll(t.cleanup);
const DAY = 86_400_000;

describe('rotateIntermediate (in-process)', () => {
  const caDir = join(t.dir, 'ca');
  const offline = join(t.dir, 'usb');
  beforeAll(async () => {
    await initCa({ name: 'Inter Test', dir: caDir, passphrase: 'correct horse' });
    // The root key lives elsewhere: the online folder has none.
    renameSync(join(caDir, 'rootCA.key'), join(t.dir, 'rootCA.key'));
  });

  it('keeps certificates of the old intermediate valid, signs new ones with the new one, twice over', async () => {
    const before = await loadCa(caDir);
    const old = await createSiteCertificate(before, {
      name: 'site-old',
      type: 'client',
      outDir: join(t.dir, 'c1'),
      validityDays: 30,
    });
    const r1 = await rotateIntermediate(caDir, {
      rootKeyPath: join(t.dir, 'rootCA.key'),
      passphrase: 'correct horse',
    });
    expect(r1.chain).toEqual([r1.fingerprint, r1.previousFingerprint]);
    const mid = await loadCa(caDir);
    const fresh = await createSiteCertificate(mid, {
      name: 'site-new',
      type: 'client',
      outDir: join(t.dir, 'c2'),
      validityDays: 30,
    });
    const r2 = await rotateIntermediate(caDir, {
      rootKeyPath: join(t.dir, 'rootCA.key'),
      passphrase: 'correct horse',
    });
    expect(r2.chain).toEqual([r2.fingerprint, r1.fingerprint, r1.previousFingerprint]);
    const now = await loadCa(caDir);
    const chain = readFileSync(join(caDir, 'chain.pem'), 'utf8');
    expect(chain).toBe(now.chainPem);
    for (const c of [old, fresh]) {
      const leaf = readFileSync(c.certPath, 'utf8').split(/(?<=-----END CERTIFICATE-----)/)[0]!;
      expect(verifyChain(leaf, chain, now.rootPem)).toBe(true);
    }
    // The old intermediate's certificate is refused once it has expired, rotation or not.
    const leaf = readFileSync(old.certPath, 'utf8').split(/(?<=-----END CERTIFICATE-----)/)[0]!;
    expect(verifyChain(leaf, chain, now.rootPem, new Date(Date.now() + 400 * DAY))).toBe(false);
  });

  it('refuses a wrong root key, a locked one, and a missing one, and changes nothing', async () => {
    const other = join(t.dir, 'other');
    await initCa({ name: 'Other', dir: other });
    const chain = readFileSync(join(caDir, 'chain.pem'), 'utf8');
    const code = async (o: Parameters<typeof rotateIntermediate>[1]) => {
      try {
        await rotateIntermediate(caDir, o);
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return 'none';
    };
    expect(await code({ rootKeyPath: join(other, 'rootCA.key') })).toBe('CA_ROOT_KEY_MISMATCH');
    expect(await code({ rootKeyPath: join(t.dir, 'rootCA.key') })).toBe('CA_LOCKED');
    expect(await code({ rootKeyPath: join(t.dir, 'rootCA.key'), passphrase: 'wrong' })).toBe('CA_LOCKED');
    expect(await code({})).toBe('FILE_NOT_FOUND');
    expect(readFileSync(join(caDir, 'chain.pem'), 'utf8')).toBe(chain);
  });

  it('pollen cert rotate intermediate --json: one document, also on failure', async () => {
    copyFileSync(join(t.dir, 'rootCA.key'), `${offline}-key.pem`);
    const ok = await pollenInProcess(
      ['cert', 'rotate', 'intermediate', '-c', caDir, '--root-key', `${offline}-key.pem`, '--json'],
      { env: { POLLEN_CA_PASSPHRASE: 'correct horse' } },
    );
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).chain).toHaveLength(4);
    const bad = await pollenInProcess([
      'cert',
      'rotate',
      'intermediate',
      '-c',
      caDir,
      '--root-key',
      join(t.dir, 'other', 'rootCA.key'),
      '--json',
    ]);
    expect(bad.code).not.toBe(0);
    expect(JSON.parse(bad.stdout).error.code).toBe('CA_ROOT_KEY_MISMATCH');
  });
});

describe('a running Certificate Service during an intermediate rotation', () => {
  let cs: LiveCertService;
  beforeAll(async () => {
    cs = await startLiveCertService(join(t.dir, 'live'), {
      name: 'Inter Live',
      apiKey: 'pollen_rotate_inter_key_0123456789abcdefghijklmnop',
      policy: testPolicy('inter-live', ['{ name: "all", match: {}, action: approve }']),
      reloadCheckMs: 20,
    });
  });
  afterAll(() => cs.close());

  it('issues under the new intermediate after the rotation and serves a chain with both', async () => {
    const first = await cs.enroll('site-1');
    expect(first.status).toBe(200);
    const r = await rotateIntermediate(cs.caDir);
    await vi.waitFor(
      async () => {
        const next = await cs.enroll(`site-${Math.random().toString(36).slice(2, 8)}`);
        expect(next.status).toBe(200);
        expect(next.json.chain).toContain(readFileSync(join(cs.caDir, 'intermediateCA.pem'), 'utf8').trim());
      },
      { timeout: 5_000, interval: 50 },
    );
    const now = await loadCa(cs.caDir);
    expect(now.intermediatePems).toHaveLength(2);
    expect(r.chain).toHaveLength(2);
    // The first site's certificate (old intermediate) still chains with the chain served now.
    const served = (await cs.enroll('site-last')).json.chain as string;
    expect(verifyChain(first.json.certificate, served, now.rootPem)).toBe(true);
  });
});
