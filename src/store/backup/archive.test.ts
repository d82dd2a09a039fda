import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { type ArchiveContents, openArchive, readHeader, sealArchive } from './archive.js';

const PASS = 'correct horse battery staple';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n';

/** A cheap scrypt: these tests check the format, not the key derivation's cost. */
const seal = (c: ArchiveContents, p: string) => sealArchive(c, p, { N: 1 << 10 });

const contents = (): ArchiveContents => ({
  component: 'cert-service',
  createdAt: '2026-01-02T03:04:05.000Z',
  database: 'sqlite',
  privateKeys: true,
  files: [
    { path: 'tls/service.key', mode: 0o600, data: Buffer.from(KEY) },
    { path: 'policy.yaml', mode: 0o644, data: Buffer.from('metadata: { project: p }\n') },
  ],
});

describe('backup archives', () => {
  it('give back every file, mode and the component with the passphrase they were sealed with', () => {
    const opened = openArchive(seal(contents(), PASS), PASS);
    expect(opened.component).toBe('cert-service');
    expect(opened.files.map((f) => [f.path, f.mode, f.data.toString()])).toEqual(
      contents().files.map((f) => [f.path, f.mode, f.data.toString()]),
    );
  });

  it('never hold a private key in plaintext, even compressed', () => {
    const sealed = seal(contents(), PASS);
    expect(sealed.includes('PRIVATE KEY')).toBe(false);
    expect(sealed.includes(gzipSync(Buffer.from(KEY)).subarray(10, 30))).toBe(false);
  });

  it('refuse a wrong passphrase as such', () => {
    expect(() => openArchive(seal(contents(), PASS), 'another passphrase')).toThrow(
      expect.objectContaining({ code: 'BACKUP_WRONG_PASSPHRASE' }),
    );
  });

  it('refuse any changed byte of the body, the tag or the header', () => {
    const sealed = seal(contents(), PASS);
    const headerEnd = readHeader(sealed).aad.length;
    for (const at of [headerEnd + 3, Math.floor((headerEnd + sealed.length) / 2), sealed.length - 1]) {
      const bad = Buffer.from(sealed);
      bad[at]! ^= 0x01;
      expect(() => openArchive(bad, PASS), `byte ${at}`).toThrow(
        expect.objectContaining({ code: 'BACKUP_TAMPERED' }),
      );
    }
    // The component named in the header is covered too.
    const relabelled = Buffer.from(
      sealed.toString('latin1').replace('"component":"cert-service"', '"component":"superlink___"'),
      'latin1',
    );
    expect(() => openArchive(relabelled, PASS)).toThrow(expect.objectContaining({ code: 'BACKUP_TAMPERED' }));
  });

  it('refuse a file changed together with its listed hash (the whole is authenticated, not a hash list)', () => {
    // An attacker who knows the passphrase-free layout rebuilds the payload with a new file and a
    // matching manifest hash, and re-encrypts it under a key of their own: the check value or the
    // tag gives it away, since neither can be made without the passphrase.
    const sealed = seal(contents(), PASS);
    const forged = seal(
      { ...contents(), files: [{ path: 'policy.yaml', mode: 0o644, data: Buffer.from('evil') }] },
      'the attacker passphrase',
    );
    // Graft the forged body under the genuine header: the tag does not verify.
    const aad = readHeader(sealed).aad;
    const graft = Buffer.concat([aad, forged.subarray(readHeader(forged).aad.length)]);
    expect(() => openArchive(graft, PASS)).toThrow(expect.objectContaining({ code: 'BACKUP_TAMPERED' }));
  });

  it('refuse what is not an archive, or is cut short', () => {
    expect(() => openArchive(Buffer.from('hello'), PASS)).toThrow(
      expect.objectContaining({ code: 'BACKUP_INVALID' }),
    );
    const sealed = seal(contents(), PASS);
    expect(() => openArchive(sealed.subarray(0, 40), PASS)).toThrow(
      expect.objectContaining({ code: 'BACKUP_INVALID' }),
    );
    expect(() => openArchive(sealed.subarray(0, sealed.length - 5), PASS)).toThrow(
      expect.objectContaining({ code: 'BACKUP_TAMPERED' }),
    );
  });
});
