import { describe, expect, it } from 'vitest';
import { generateKeyPair, importPrivateKeyPem, privateKeyToPem } from './keys.js';

describe('private key files', () => {
  it('round-trips a passphrase-encrypted key and refuses a wrong or missing passphrase', async () => {
    const keys = await generateKeyPair('ec-p384');
    const pem = await privateKeyToPem(keys.privateKey, 'correct horse');
    expect(pem).toContain('BEGIN ENCRYPTED PRIVATE KEY');
    const loaded = await importPrivateKeyPem(pem, 'correct horse');
    expect(loaded.info).toEqual({ kind: 'ec', curve: 'P-384', bits: 384 });
    await expect(importPrivateKeyPem(pem, 'wrong')).rejects.toMatchObject({ code: 'CA_LOCKED' });
    await expect(importPrivateKeyPem(pem)).rejects.toMatchObject({ code: 'CA_LOCKED' });
  });

  it('writes unencrypted PKCS#8 without a passphrase and refuses garbage', async () => {
    const pem = await privateKeyToPem((await generateKeyPair('ec-p256')).privateKey);
    expect(pem).toContain('BEGIN PRIVATE KEY');
    expect((await importPrivateKeyPem(pem)).info.curve).toBe('P-256');
    await expect(importPrivateKeyPem('not a key')).rejects.toMatchObject({ code: 'KEY_INVALID' });
  });
});
