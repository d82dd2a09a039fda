import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkCsr, createCsr, createCsrFromKey } from './csr.js';
import { generateKeyPair, keyTypeInfo } from './keys.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-csr-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function opensslCsr(newkey: string[], cn = 'site-a'): string {
  return execFileSync(
    'openssl',
    ['req', '-new', ...newkey, '-nodes', '-keyout', join(dir, 'k.pem'), '-subj', `/CN=${cn}`],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  ).toString();
}

describe('checkCsr', () => {
  it('accepts OpenSSL requests with P-256, P-384 and RSA-2048 keys', () => {
    const p256 = checkCsr(opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']));
    expect(p256).toMatchObject({ commonName: 'site-a', keyInfo: { kind: 'ec', curve: 'P-256' } });
    expect(checkCsr(opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'])).keyInfo.curve).toBe(
      'P-384',
    );
    expect(checkCsr(opensslCsr(['-newkey', 'rsa:2048'])).keyInfo).toEqual({ kind: 'rsa', bits: 2048 });
  });

  it('refuses weak or unsupported keys with KEY_TOO_WEAK', () => {
    expect(() => checkCsr(opensslCsr(['-newkey', 'rsa:1024']))).toThrow(
      expect.objectContaining({ code: 'KEY_TOO_WEAK' }),
    );
    expect(() => checkCsr(opensslCsr(['-newkey', 'ed25519']))).toThrow(
      expect.objectContaining({ code: 'KEY_TOO_WEAK' }),
    );
    expect(() => checkCsr(opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1']))).toThrow(
      expect.objectContaining({ code: 'KEY_TOO_WEAK' }),
    );
  });

  it('refuses a SHA-1 signed request', () => {
    writeFileSync(
      join(dir, 'sha1.key'),
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    const csr = execFileSync('openssl', [
      'req',
      '-new',
      '-sha1',
      '-key',
      join(dir, 'sha1.key'),
      '-subj',
      '/CN=x',
    ]).toString();
    expect(() => checkCsr(csr)).toThrow(expect.objectContaining({ code: 'CSR_INVALID' }));
  });

  it('refuses a request whose signature does not verify', () => {
    const pem = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s+/g, ''), 'base64');
    der[25] = der[25]! ^ 0x01; // inside the subject
    const bad = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(() => checkCsr(bad)).toThrow(expect.objectContaining({ code: expect.stringMatching(/^CSR_/) }));
  });

  it.each([
    ['missing', undefined],
    ['a number', 42],
    ['empty', ''],
    ['not PEM', 'hello'],
    [
      'a certificate',
      readFileSync('/etc/ssl/certs/ca-certificates.crt', 'utf8').split('-----END CERTIFICATE-----')[0] +
        '-----END CERTIFICATE-----\n',
    ],
    ['garbage base64', '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'],
    [
      'truncated DER',
      '-----BEGIN CERTIFICATE REQUEST-----\nMIIBADCBpwIBADAR\n-----END CERTIFICATE REQUEST-----\n',
    ],
    [
      'oversized',
      `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(20_000)}\n-----END CERTIFICATE REQUEST-----\n`,
    ],
  ])('refuses %s input with CSR_INVALID', (_what, input) => {
    expect(() => checkCsr(input)).toThrow(expect.objectContaining({ code: 'CSR_INVALID' }));
  });
});

describe('making CSRs', () => {
  it('createCsrFromKey output is accepted by OpenSSL and by checkCsr', () => {
    for (const curve of ['P-256', 'P-384'] as const) {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: curve });
      const pem = createCsrFromKey(privateKey, 'hospital-9');
      writeFileSync(join(dir, 'fast.csr'), pem);
      expect(
        execFileSync('openssl', ['req', '-in', join(dir, 'fast.csr'), '-verify', '-noout'], {
          stdio: 'pipe',
        }).toString() + '',
      ).toBeDefined();
      expect(checkCsr(pem)).toMatchObject({ commonName: 'hospital-9', keyInfo: { curve } });
    }
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(checkCsr(createCsrFromKey(privateKey, 'r')).keyInfo.kind).toBe('rsa');
  });

  it('createCsr (WebCrypto keys) output passes checkCsr', async () => {
    const keys = await generateKeyPair('ec-p256');
    expect(checkCsr(await createCsr(keys, keyTypeInfo('ec-p256'), 'site-b')).commonName).toBe('site-b');
  });
});
