import 'reflect-metadata';
import { createPrivateKey, createPublicKey, type KeyObject, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { PollenError } from '../errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-3072'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** What a key is, whatever produced it (our CLI, openssl, a CSR). */
export interface KeyInfo {
  kind: 'ec' | 'rsa';
  /** 'P-256' / 'P-384' for EC, the modulus length for RSA. */
  curve?: 'P-256' | 'P-384';
  bits: number;
}

export function isKeyType(v: string): v is KeyType {
  return (KEY_TYPES as readonly string[]).includes(v);
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

/** Private key to PKCS#8 PEM, encrypted with AES-256-CBC (scrypt-free PBES2) when a passphrase is given. */
export async function privateKeyToPem(key: CryptoKey, passphrase?: string): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const obj = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  return passphrase
    ? (obj.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }) as string)
    : (obj.export({ type: 'pkcs8', format: 'pem' }) as string);
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
    if (/passphrase|decrypt|bad decrypt/i.test(msg))
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
