import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { PollenError } from '../errors.js';
import {
  bitString,
  children,
  ctx,
  DerError,
  decodeOid,
  expect,
  nameFields,
  oid,
  readOne,
  seq,
  set,
  uint,
  utf8,
} from './der.js';
import { describeKey, type KeyInfo, signingAlgorithm, x509 } from './keys.js';

/** CSRs above this size are refused before parsing. */
export const MAX_CSR_PEM_BYTES = 16 * 1024;

export interface CheckedCsr {
  commonName: string | undefined;
  /** DER SubjectPublicKeyInfo, exactly as in the request. */
  spki: Buffer;
  publicKey: KeyObject;
  keyInfo: KeyInfo;
}

/** Signature algorithms accepted on a CSR; SHA-1 and MD5 are refused. */
const SIG_HASH: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};

const PEM_RE =
  /^-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (NEW )?CERTIFICATE REQUEST-----\s*$/;

/**
 * Parse and check a PKCS#10 request: shape, size, signature by its own key, and key strength.
 * The result carries only the key and the requested common name; the certificate's names and
 * usages come from the token, never from the request.
 */
export function checkCsr(pem: unknown): CheckedCsr {
  if (typeof pem !== 'string' || pem.length === 0)
    throw new PollenError('CSR_INVALID', 'The CSR is missing or not a string');
  if (pem.length > MAX_CSR_PEM_BYTES)
    throw new PollenError('CSR_INVALID', `The CSR is larger than ${MAX_CSR_PEM_BYTES} bytes`);
  const m = PEM_RE.exec(`${pem.trim()}\n`);
  if (!m) throw new PollenError('CSR_INVALID', 'The CSR is not a PEM certificate request');
  let info: Buffer;
  let spki: Buffer;
  let hash: string | undefined;
  let signature: Buffer;
  let commonNames: string[];
  let sigOid: string;
  try {
    const der = Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64');
    const [reqInfo, sigAlg, sig, extra] = children(expect(readOne(der), 0x30, 'CertificationRequest'));
    if (extra) throw new DerError('trailing fields');
    const [version, subject, spkiTlv] = children(expect(reqInfo, 0x30, 'CertificationRequestInfo'));
    expect(version, 0x02, 'version');
    commonNames = nameFields(expect(subject, 0x30, 'subject'), '2.5.4.3');
    spki = expect(spkiTlv, 0x30, 'SubjectPublicKeyInfo').raw;
    sigOid = decodeOid(expect(children(expect(sigAlg, 0x30, 'signatureAlgorithm'))[0], 0x06, 'OID').content);
    hash = SIG_HASH[sigOid];
    const bits = expect(sig, 0x03, 'signature');
    if (bits.content[0] !== 0) throw new DerError('signature has unused bits');
    signature = bits.content.subarray(1);
    info = reqInfo!.raw;
  } catch (e) {
    throw new PollenError('CSR_INVALID', 'The CSR cannot be decoded', { cause: e });
  }
  // Two common names would let a reader pick the one it likes: the request must be unambiguous.
  if (commonNames.length > 1)
    throw new PollenError('CSR_INVALID', `The CSR subject has ${commonNames.length} common names`, {
      hint: 'Make the CSR with exactly one CN, the name on your token (e.g. -subj "/CN=hospital-1").',
    });
  const commonName = commonNames[0];
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (e) {
    throw new PollenError('CSR_INVALID', 'The CSR public key cannot be read', { cause: e });
  }
  const keyInfo = describeKey(publicKey);
  if (!hash)
    throw new PollenError('CSR_INVALID', `The CSR signature algorithm ${sigOid} is not accepted`, {
      hint: 'Sign the CSR with ECDSA or RSA and SHA-256 or stronger.',
    });
  let valid = false;
  try {
    valid = verify(hash, info, { key: publicKey, dsaEncoding: 'der' }, signature);
  } catch {
    valid = false;
  }
  if (!valid)
    throw new PollenError('CSR_SIGNATURE_INVALID', 'The CSR signature does not verify with its own key');
  return { commonName, spki, publicKey, keyInfo };
}

/** Make a CSR (used by sites enrolling themselves); the subject is just the common name. */
export async function createCsr(keys: CryptoKeyPair, keyInfo: KeyInfo, commonName: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [commonName] }],
    keys,
    signingAlgorithm: signingAlgorithm(keyInfo),
  });
  return csr.toString('pem');
}

/**
 * Make a CSR from a Node private key without WebCrypto: subject CN only, no attributes, signed
 * with SHA-256 (SHA-384 for P-384). Fast enough to make thousands (benchmarks, batch tests).
 */
export function createCsrFromKey(privateKey: KeyObject, commonName: string): string {
  const info = describeKey(privateKey);
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const p384 = info.kind === 'ec' && info.curve === 'P-384';
  const alg =
    info.kind === 'rsa'
      ? { der: seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00])), hash: 'sha256' }
      : {
          der: seq(oid(p384 ? '1.2.840.10045.4.3.3' : '1.2.840.10045.4.3.2')),
          hash: p384 ? 'sha384' : 'sha256',
        };
  const reqInfo = seq(uint(0), seq(set(seq(oid('2.5.4.3'), utf8(commonName)))), spki, ctx(0, true));
  const sig = sign(alg.hash, reqInfo, { key: privateKey, dsaEncoding: 'der' });
  const der = seq(reqInfo, alg.der, bitString(sig));
  const b64 = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`;
}
