import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeOf } from '../../test/support/errors.js';
import {
  ecdsaHashFor,
  nodeIdFromPublicKey,
  parseSshPrivateKey,
  parseSshPublicKey,
  parseSshPublicKeyBlob,
  sshFingerprint,
  sshPublicKeyBlob,
  sshPublicKeyLine,
} from './openssh.js';

const SSH_KEYGEN = '/usr/bin/ssh-keygen';
let dir: string;

function keygen(name: string, ...args: string[]): string {
  const file = join(dir, name);
  execFileSync(SSH_KEYGEN, ['-q', ...args, '-f', file], { stdio: 'ignore' });
  return file;
}

function keygenOut(...args: string[]): string {
  return execFileSync(SSH_KEYGEN, args, { encoding: 'utf8' }).trim();
}

const read = (file: string) => readFileSync(file, 'utf8');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-openssh-'));
  keygen('p256', '-t', 'ecdsa', '-b', '256', '-N', '', '-C', 'site-a@pollen');
  keygen('p384', '-t', 'ecdsa', '-b', '384', '-N', '', '-C', 'site b with spaces');
  keygen('p384-nocomment', '-t', 'ecdsa', '-b', '384', '-N', '', '-C', '');
  keygen('p384-enc', '-t', 'ecdsa', '-b', '384', '-N', 'secret');
  keygen('p521', '-t', 'ecdsa', '-b', '521', '-N', '');
  keygen('ed25519', '-t', 'ed25519', '-N', '');
  keygen('rsa', '-t', 'rsa', '-b', '2048', '-N', '');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('OpenSSH ECDSA keys from ssh-keygen', () => {
  for (const [name, bits, type] of [
    ['p256', 256, 'ecdsa-sha2-nistp256'],
    ['p384', 384, 'ecdsa-sha2-nistp384'],
  ] as const) {
    it(`parses a P-${bits} private key and its .pub, matching ssh-keygen`, () => {
      const file = join(dir, name);
      const priv = parseSshPrivateKey(read(file));
      const pub = parseSshPublicKey(read(`${file}.pub`));
      expect(priv.type).toBe(type);
      expect(pub.type).toBe(type);
      expect(priv.privateKey.type).toBe('private');
      expect(pub.key.type).toBe('public');

      // The public half derived from the private scalar is the .pub, comment included.
      expect(priv.publicKey.blob.equals(pub.blob)).toBe(true);
      expect(priv.publicKey.comment).toBe(pub.comment);
      expect(sshPublicKeyLine(priv.publicKey)).toBe(read(`${file}.pub`).trim());
      expect(sshPublicKeyLine(priv.privateKey)).toBe(
        keygenOut('-y', '-f', file).split(' ').slice(0, 2).join(' '),
      );
      expect(sshPublicKeyBlob(pub.key).equals(pub.blob)).toBe(true);

      // `ssh-keygen -lf` prints "BITS SHA256:… comment (ECDSA)".
      const fp = keygenOut('-lf', `${file}.pub`).split(' ')[1];
      expect(sshFingerprint(pub)).toBe(fp);
      expect(sshFingerprint(priv.privateKey)).toBe(fp);
      expect(sshFingerprint(pub.key)).toBe(fp);

      const id = nodeIdFromPublicKey(pub);
      expect(id).toMatch(/^[0-9a-f]{16}$/);
      expect(nodeIdFromPublicKey(priv.privateKey)).toBe(id);
      expect(nodeIdFromPublicKey(parseSshPublicKey(`${type} ${pub.blob.toString('base64')}`))).toBe(id);

      const hash = ecdsaHashFor(pub);
      expect(hash).toBe(bits === 256 ? 'sha256' : 'sha384');
      const data = Buffer.from('pollen');
      const sig = sign(hash, data, priv.privateKey);
      expect(verify(hash, data, pub.key, sig)).toBe(true);
      expect(verify(hash, Buffer.from('pollen!'), pub.key, sig)).toBe(false);
    });
  }

  it('reads the comment exactly, including spaces, and an empty comment', () => {
    expect(parseSshPrivateKey(read(join(dir, 'p384'))).publicKey.comment).toBe('site b with spaces');
    expect(parseSshPublicKey(read(join(dir, 'p384.pub'))).comment).toBe('site b with spaces');
    const bare = join(dir, 'p384-nocomment');
    expect(parseSshPrivateKey(read(bare)).publicKey.comment).toBe('');
    expect(sshPublicKeyLine(parseSshPrivateKey(read(bare)).publicKey)).toBe(read(`${bare}.pub`).trim());
  });

  it('accepts PEM PKCS#8 and SEC1 EC keys, which ssh-keygen reads as the same key', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    for (const type of ['pkcs8', 'sec1'] as const) {
      const file = join(dir, `pem-${type}`);
      writeFileSync(file, privateKey.export({ type, format: 'pem' }), { mode: 0o600 });
      const parsed = parseSshPrivateKey(read(file));
      expect(parsed.type).toBe('ecdsa-sha2-nistp384');
      expect(sshPublicKeyLine(parsed.publicKey)).toBe(keygenOut('-y', '-f', file).trim());
    }
  });
});

describe('refusals', () => {
  it('refuses an encrypted key with a hint to remove the passphrase', () => {
    let err: unknown;
    try {
      parseSshPrivateKey(read(join(dir, 'p384-enc')));
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'SSH_KEY_ENCRYPTED' });
    expect((err as { hint: string }).hint).toContain('ssh-keygen -p -N ""');
    // Its .pub is fine: only the private half is sealed.
    expect(parseSshPublicKey(read(join(dir, 'p384-enc.pub'))).type).toBe('ecdsa-sha2-nistp384');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' });
    expect(codeOf(() => parseSshPrivateKey(pem))).toBe('SSH_KEY_ENCRYPTED');
  });

  it('refuses ed25519, RSA and nistp521 keys, private and public, naming what is accepted', () => {
    for (const name of ['ed25519', 'rsa', 'p521']) {
      expect(
        codeOf(() => parseSshPrivateKey(read(join(dir, name)))),
        name,
      ).toBe('SSH_KEY_UNSUPPORTED');
      expect(
        codeOf(() => parseSshPublicKey(read(join(dir, `${name}.pub`)))),
        name,
      ).toBe('SSH_KEY_UNSUPPORTED');
    }
    try {
      parseSshPrivateKey(read(join(dir, 'ed25519')));
    } catch (e) {
      expect((e as { hint: string }).hint).toContain('ecdsa-sha2-nistp256 and ecdsa-sha2-nistp384');
    }
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    expect(codeOf(() => parseSshPrivateKey(rsa.export({ type: 'pkcs8', format: 'pem' })))).toBe(
      'SSH_KEY_UNSUPPORTED',
    );
    expect(codeOf(() => parseSshPrivateKey(rsa.export({ type: 'pkcs1', format: 'pem' })))).toBe(
      'SSH_KEY_UNSUPPORTED',
    );
    expect(codeOf(() => sshPublicKeyLine(rsa))).toBe('SSH_KEY_UNSUPPORTED');
  });

  it('refuses truncated, garbage and tampered private keys as SSH_KEY_INVALID', () => {
    const text = read(join(dir, 'p384'));
    const lines = text.trim().split('\n');
    const body = lines.slice(1, -1).join('');
    const wrap = (b64: string) => `${lines[0]}\n${b64}\n${lines.at(-1)}\n`;
    const withBytes = (edit: (b: Buffer) => void) => {
      const b = Buffer.from(body, 'base64');
      edit(b);
      return wrap(b.toString('base64'));
    };
    const bad = {
      empty: '',
      garbage: 'hello world',
      noEnd: text.slice(0, text.indexOf('-----END')),
      halfBody: wrap(body.slice(0, Math.floor(body.length / 2))),
      notBase64: wrap('!!!!'),
      wrongMagic: withBytes((b) => {
        b[0] = 0x41;
      }),
      // The check-ints sit right after the private section's length.
      checkInt: withBytes((b) => {
        const at = offsets(b).checkInt;
        b[at] = b[at]! ^ 0xff;
      }),
      padding: withBytes((b) => {
        b[b.length - 1] = 0x99;
      }),
      pemGarbage: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
    };
    for (const [name, input] of Object.entries(bad))
      expect(
        codeOf(() => parseSshPrivateKey(input)),
        name,
      ).toBe('SSH_KEY_INVALID');
    expect(codeOf(() => parseSshPrivateKey(text))).toBe('no error');
  });

  it('refuses a private key whose stored public point is not its own', () => {
    const a = read(join(dir, 'p384'));
    const other = parseSshPrivateKey(read(join(dir, 'p384-nocomment'))).publicKey.blob;
    const lines = a.trim().split('\n');
    const b = Buffer.from(lines.slice(1, -1).join(''), 'base64');
    // Swap the clear-text public blob for another P-384 key of the same length.
    const { publicBlob } = offsets(b);
    expect(b.readUInt32BE(publicBlob - 4)).toBe(other.length);
    other.copy(b, publicBlob);
    const forged = `${lines[0]}\n${b.toString('base64')}\n${lines.at(-1)}\n`;
    expect(codeOf(() => parseSshPrivateKey(forged))).toBe('SSH_KEY_INVALID');
  });

  it('refuses malformed public key lines and points off the curve', () => {
    const line = read(join(dir, 'p256.pub')).trim();
    const [, b64] = line.split(' ');
    const blob = Buffer.from(b64!, 'base64');
    const offCurve = Buffer.from(blob);
    offCurve[offCurve.length - 1] = offCurve[offCurve.length - 1]! ^ 1;
    for (const [name, input] of Object.entries({
      garbage: 'not a key',
      empty: '',
      typeMismatch: `ecdsa-sha2-nistp384 ${b64}`,
      truncated: `ecdsa-sha2-nistp256 ${blob.subarray(0, blob.length - 10).toString('base64')}`,
      trailing: `ecdsa-sha2-nistp256 ${Buffer.concat([blob, Buffer.from([0])]).toString('base64')}`,
      offCurve: `ecdsa-sha2-nistp256 ${offCurve.toString('base64')}`,
    }))
      expect(
        codeOf(() => parseSshPublicKey(input)),
        name,
      ).toBe('SSH_KEY_INVALID');
    expect(codeOf(() => parseSshPublicKeyBlob(Buffer.from('junk')))).toBe('SSH_KEY_INVALID');
  });
});

/** Offsets in a decoded openssh-key-v1 file: the public blob and the first check-int. */
function offsets(b: Buffer): { publicBlob: number; checkInt: number } {
  let at = 15; // 'openssh-key-v1\0'
  for (let i = 0; i < 3; i++) at += 4 + b.readUInt32BE(at); // cipher, kdf, kdf options
  at += 4; // key count
  const publicBlob = at + 4;
  at += 4 + b.readUInt32BE(at);
  return { publicBlob, checkInt: at + 4 }; // after the sealed section's length
}
