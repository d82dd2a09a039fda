import 'reflect-metadata';
import {
  createCipheriv,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  pbkdf2Sync,
  randomBytes,
  webcrypto,
} from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { PollenError } from '../errors.js';
import { nul, octets, oid, seq, uint } from './der.js';
import type { KeyType } from './vocabulary.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { isKeyType, KEY_TYPES, type KeyType } from './vocabulary.js';

/** What a key is, whatever produced it (our CLI, openssl, a CSR). */
export interface KeyInfo {
  kind: 'ec' | 'rsa';
  /** 'P-256' / 'P-384' for EC, the modulus length for RSA. */
  curve?: 'P-256' | 'P-384';
  bits: number;
}

/** WebCrypto parameters for generating, importing and signing with each key type. */
function algorithmFor(info: KeyInfo): {
  gen: RsaHashedKeyGenParams | EcKeyGenParams;
  sign: Algorithm | EcdsaParams;
  import: RsaHashedImportParams | EcKeyImportParams;
} {
  if (info.kind === 'ec') {
    const hash = info.curve === 'P-384' ? 'SHA-384' : 'SHA-256';
    return {
      gen: { name: 'ECDSA', namedCurve: info.curve ?? 'P-256' },
      sign: { name: 'ECDSA', hash },
      import: { name: 'ECDSA', namedCurve: info.curve ?? 'P-256' },
    };
  }
  const rsa = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  return {
    gen: { ...rsa, modulusLength: info.bits, publicExponent: new Uint8Array([1, 0, 1]) },
    sign: rsa,
    import: rsa,
  };
}

export function keyTypeInfo(type: KeyType): KeyInfo {
  switch (type) {
    case 'ec-p256':
      return { kind: 'ec', curve: 'P-256', bits: 256 };
    case 'ec-p384':
      return { kind: 'ec', curve: 'P-384', bits: 384 };
    case 'rsa-3072':
      return { kind: 'rsa', bits: 3072 };
  }
}

/** Describe a Node KeyObject (public or private); refuses key types Pollen does not accept. */
export function describeKey(key: KeyObject): KeyInfo {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    const curve = details.namedCurve;
    if (curve === 'prime256v1' || curve === 'P-256') return { kind: 'ec', curve: 'P-256', bits: 256 };
    if (curve === 'secp384r1' || curve === 'P-384') return { kind: 'ec', curve: 'P-384', bits: 384 };
    throw new PollenError('KEY_TOO_WEAK', `EC curve ${curve ?? 'unknown'} is not accepted`);
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < 2048)
      throw new PollenError('KEY_TOO_WEAK', `RSA keys must have at least 2048 bits (got ${bits})`);
    if (bits > 8192)
      throw new PollenError('KEY_TOO_WEAK', `RSA keys above 8192 bits are not accepted (got ${bits})`);
    // e = 1 would make any "signature" verify; only the standard exponent is accepted.
    if (details.publicExponent !== undefined && details.publicExponent !== 65537n)
      throw new PollenError(
        'KEY_TOO_WEAK',
        `RSA public exponent must be 65537 (got ${details.publicExponent})`,
      );
    return { kind: 'rsa', bits };
  }
  throw new PollenError('KEY_TOO_WEAK', `Key type ${key.asymmetricKeyType ?? 'unknown'} is not accepted`, {
    hint: 'Use an EC P-256 or P-384 key, or RSA of at least 2048 bits.',
  });
}

export function signingAlgorithm(info: KeyInfo): Algorithm | EcdsaParams {
  return algorithmFor(info).sign;
}

export async function generateKeyPair(type: KeyType): Promise<CryptoKeyPair> {
  const info = keyTypeInfo(type);
  return (await webcrypto.subtle.generateKey(algorithmFor(info).gen, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair;
}

/** PBKDF2 iterations for passphrase-encrypted keys (OWASP's figure for PBKDF2-HMAC-SHA256). */
export const PBKDF2_ITERATIONS = 600_000;

/**
 * Private key to PKCS#8 PEM; with a passphrase, an EncryptedPrivateKeyInfo (PBES2: PBKDF2-HMAC-
 * SHA256 with 600,000 iterations, AES-256-CBC) that OpenSSL and Node read. Node's own export
 * uses 2,048 iterations, too few for a root key that may be copied around offline.
 */
export async function privateKeyToPem(key: CryptoKey, passphrase?: string): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  if (!passphrase)
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const aesKey = pbkdf2Sync(passphrase, salt, PBKDF2_ITERATIONS, 32, 'sha256');
  const cipher = createCipheriv('aes-256-cbc', aesKey, iv);
  const encrypted = Buffer.concat([cipher.update(der), cipher.final()]);
  const algorithm = seq(
    oid('1.2.840.113549.1.5.13'), // PBES2
    seq(
      seq(
        oid('1.2.840.113549.1.5.12'),
        seq(octets(salt), uint(PBKDF2_ITERATIONS.toString(16)), seq(oid('1.2.840.113549.2.9'), nul())),
      ),
      seq(oid('2.16.840.1.101.3.4.1.42'), octets(iv)), // aes256-CBC
    ),
  );
  const b64 = seq(algorithm, octets(encrypted))
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${b64}\n-----END ENCRYPTED PRIVATE KEY-----\n`;
}

export interface LoadedPrivateKey {
  cryptoKey: CryptoKey;
  keyObject: KeyObject;
  info: KeyInfo;
}

/** Import a PEM private key (PKCS#8, SEC1 or PKCS#1; encrypted or not) for signing. */
export async function importPrivateKeyPem(
  pem: string | Buffer,
  passphrase?: string,
): Promise<LoadedPrivateKey> {
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(passphrase ? { key: pem, passphrase } : { key: pem });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (String(pem).includes('ENCRYPTED') || /passphrase|decrypt/i.test(msg))
      throw new PollenError(
        'CA_LOCKED',
        passphrase ? 'Wrong passphrase for the key' : 'The key is encrypted',
        {
          cause: e,
        },
      );
    throw new PollenError('KEY_INVALID', 'Not a readable private key', { cause: e, detail: msg });
  }
  const info = describeKey(keyObject);
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  const cryptoKey = await webcrypto.subtle.importKey('pkcs8', der, algorithmFor(info).import, false, [
    'sign',
  ]);
  return { cryptoKey, keyObject, info };
}

/** WebCrypto public key from a KeyObject / SPKI, for @peculiar/x509 generators. */
export async function importPublicKey(key: KeyObject): Promise<CryptoKey> {
  const info = describeKey(key);
  const spki = key.export({ type: 'spki', format: 'der' });
  return webcrypto.subtle.importKey('spki', spki, algorithmFor(info).import, true, ['verify']);
}

export function publicKeyObject(spkiDer: ArrayBuffer | Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.from(spkiDer as ArrayBuffer), format: 'der', type: 'spki' });
}

export { x509 };
