import { createECDH, createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { PollenError } from '../errors.js';

/**
 * SuperNode keys in OpenSSH formats: the private key `ssh-keygen -t ecdsa -b 384 -N '' -f KEY`
 * writes (openssh-key-v1, unencrypted), its `KEY.pub` line, and `ssh-keygen -lf` fingerprints.
 * Only ECDSA on P-256 and P-384 is accepted: the Fleet API verifies with node:crypto and the
 * two NIST curves are what the rest of Pollen's PKI accepts.
 */

export const SSH_KEY_TYPES = ['ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384'] as const;
export type SshKeyType = (typeof SSH_KEY_TYPES)[number];

interface CurveSpec {
  type: SshKeyType;
  /** The SSH curve identifier inside the key blob. */
  sshCurve: 'nistp256' | 'nistp384';
  jwkCurve: 'P-256' | 'P-384';
  /** OpenSSL name for createECDH. */
  opensslCurve: 'prime256v1' | 'secp384r1';
  /** Field size in bytes (length of x, y and d). */
  size: number;
  /** The hash ECDSA uses with this curve in SSH (RFC 5656 §6.2.1), and in Pollen. */
  hash: 'sha256' | 'sha384';
  /** DER SubjectPublicKeyInfo up to the uncompressed point (id-ecPublicKey, the curve OID). */
  spkiPrefix: Buffer;
}

const CURVES: Record<SshKeyType, CurveSpec> = {
  'ecdsa-sha2-nistp256': {
    type: 'ecdsa-sha2-nistp256',
    sshCurve: 'nistp256',
    jwkCurve: 'P-256',
    opensslCurve: 'prime256v1',
    size: 32,
    hash: 'sha256',
    spkiPrefix: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'),
  },
  'ecdsa-sha2-nistp384': {
    type: 'ecdsa-sha2-nistp384',
    sshCurve: 'nistp384',
    jwkCurve: 'P-384',
    opensslCurve: 'secp384r1',
    size: 48,
    hash: 'sha384',
    spkiPrefix: Buffer.from('3076301006072a8648ce3d020106052b81040022036200', 'hex'),
  },
};

const SUPPORTED_HINT =
  'Only ecdsa-sha2-nistp256 and ecdsa-sha2-nistp384 keys are accepted: `ssh-keygen -t ecdsa -b 384 -N "" -f KEY`.';

export interface SshPublicKey {
  type: SshKeyType;
  /** Node public KeyObject (EC). */
  key: KeyObject;
  /** The SSH wire blob (RFC 5656 §3.1): string type, string curve, string Q. */
  blob: Buffer;
  /** The comment of the `.pub` line or of the private key ('' if none). */
  comment: string;
}

export interface SshPrivateKey {
  type: SshKeyType;
  /** Node private KeyObject (EC). */
  privateKey: KeyObject;
  /** The public half, computed from the private scalar (never trusted from the file). */
  publicKey: SshPublicKey;
}

function invalid(message: string, detail?: string): PollenError {
  return new PollenError('SSH_KEY_INVALID', message, detail === undefined ? {} : { detail });
}

function unsupported(type: string): PollenError {
  return new PollenError('SSH_KEY_UNSUPPORTED', `SSH key type ${printable(type)} is not accepted`, {
    hint: SUPPORTED_HINT,
  });
}

/** Key type names come from untrusted input: keep messages short and printable. */
function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 40 ? `${clean.slice(0, 40)}…` : clean || '(empty)';
}

/** Reader for the SSH wire encoding (RFC 4251 §5): uint32 lengths, big-endian. */
class WireReader {
  private pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  uint32(): number {
    if (this.remaining < 4) throw invalid(`The ${this.what} is truncated`);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  bytes(n: number): Buffer {
    if (n > this.remaining) throw invalid(`The ${this.what} is truncated`);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  string(): Buffer {
    return this.bytes(this.uint32());
  }

  text(): string {
    return this.string().toString('latin1');
  }

  rest(): Buffer {
    return this.bytes(this.remaining);
  }
}

function wireString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

function curveOf(type: string): CurveSpec {
  const spec = (CURVES as Record<string, CurveSpec | undefined>)[type];
  if (!spec) throw unsupported(type);
  return spec;
}

/** Split an uncompressed point 04||X||Y; compressed points are not produced by OpenSSH. */
function splitPoint(q: Buffer, spec: CurveSpec): { x: Buffer; y: Buffer } {
  if (q.length !== 1 + 2 * spec.size || q[0] !== 0x04)
    throw invalid(`The ${spec.sshCurve} public point is malformed`);
  return { x: q.subarray(1, 1 + spec.size), y: q.subarray(1 + spec.size) };
}

function publicFromPoint(q: Buffer, spec: CurveSpec): KeyObject {
  splitPoint(q, spec);
  try {
    // SPKI rather than JWK: Node's JWK import runs a full key check that costs ~0.5 ms on P-384;
    // the SPKI path still refuses points off the curve (the cofactor is 1 on both curves).
    return createPublicKey({ key: Buffer.concat([spec.spkiPrefix, q]), format: 'der', type: 'spki' });
  } catch (e) {
    // OpenSSL refuses points that are not on the curve.
    throw new PollenError('SSH_KEY_INVALID', `The ${spec.sshCurve} public point is not on the curve`, {
      cause: e,
    });
  }
}

function buildBlob(spec: CurveSpec, q: Buffer): Buffer {
  return Buffer.concat([wireString(spec.type), wireString(spec.sshCurve), wireString(q)]);
}

/** Parse an SSH public key blob (the base64 field of a `.pub` line, decoded). */
export function parseSshPublicKeyBlob(blob: Buffer | Uint8Array, comment = ''): SshPublicKey {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const r = new WireReader(buf, 'SSH public key');
  const type = r.text();
  const spec = curveOf(type);
  const curve = r.text();
  if (curve !== spec.sshCurve)
    throw invalid(`The key says ${printable(type)} but names curve ${printable(curve)}`);
  const q = r.string();
  if (r.remaining !== 0) throw invalid('The SSH public key has trailing bytes');
  return { type: spec.type, key: publicFromPoint(q, spec), blob: Buffer.from(buf), comment };
}

/**
 * Parse one OpenSSH public key line, `ecdsa-sha2-nistp384 AAAA… comment` (the `.pub` file or an
 * authorized_keys line without options).
 */
export function parseSshPublicKey(line: string): SshPublicKey {
  // Every wire blob starts with a short uint32 length, so its base64 starts with AAAA.
  const m = /^\s*(\S+)\s+(AAAA[A-Za-z0-9+/]*={0,2})(?:\s+(.*?))?\s*$/.exec(line);
  if (!m) throw invalid('Not an OpenSSH public key line (`TYPE BASE64 [comment]`)');
  const type = m[1]!;
  curveOf(type);
  const blob = Buffer.from(m[2]!, 'base64');
  const key = parseSshPublicKeyBlob(blob, m[3] ?? '');
  // The clear-text type must agree with the one inside the blob, as OpenSSH requires.
  if (key.type !== type) throw invalid(`The line says ${printable(type)} but the key is ${key.type}`);
  return key;
}

function specForKey(key: KeyObject): CurveSpec {
  const curve = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  if (curve === 'prime256v1' || curve === 'P-256') return CURVES['ecdsa-sha2-nistp256'];
  if (curve === 'secp384r1' || curve === 'P-384') return CURVES['ecdsa-sha2-nistp384'];
  throw unsupported(
    key.asymmetricKeyType === 'ec' ? `EC ${curve ?? 'unknown curve'}` : String(key.asymmetricKeyType),
  );
}

/** The uncompressed point 04||X||Y of an EC public or private KeyObject. */
function pointOf(key: KeyObject, spec: CurveSpec): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  const pad = (v: string | undefined) => {
    const b = Buffer.from(v ?? '', 'base64url');
    return Buffer.concat([Buffer.alloc(Math.max(0, spec.size - b.length)), b]);
  };
  return Buffer.concat([Buffer.from([0x04]), pad(jwk.x), pad(jwk.y)]);
}

/** SSH wire blob of an EC P-256/P-384 key (public, or the public half of a private one). */
export function sshPublicKeyBlob(key: KeyObject | SshPublicKey): Buffer {
  if ('blob' in key) return key.blob;
  const spec = specForKey(key);
  return buildBlob(spec, pointOf(key, spec));
}

/** The OpenSSH public key line `ssh-keygen` writes to KEY.pub (no trailing newline). */
export function sshPublicKeyLine(key: KeyObject | SshPublicKey, comment?: string): string {
  const blob = sshPublicKeyBlob(key);
  const type = new WireReader(blob, 'SSH public key').text();
  const note = comment ?? ('blob' in key ? key.comment : '');
  return `${type} ${blob.toString('base64')}${note ? ` ${note}` : ''}`;
}

/** `SHA256:` + unpadded base64 of SHA-256 of the wire blob: what `ssh-keygen -lf` prints. */
export function sshFingerprint(key: KeyObject | SshPublicKey): string {
  const digest = createHash('sha256').update(sshPublicKeyBlob(key)).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

/**
 * A SuperNode's stable id: the first 8 bytes of SHA-256 of its OpenSSH public key wire blob, as
 * 16 lowercase hex characters. It depends only on the public key (not the comment or the file
 * format), so the SuperLink and the node compute it independently; 64 bits keeps it short in
 * logs while a collision among a federation's keys stays negligible (birthday bound ~2^32 keys).
 * It is an identifier, not a credential: authentication always checks the key itself.
 */
export function nodeIdFromPublicKey(key: KeyObject | SshPublicKey): string {
  return createHash('sha256').update(sshPublicKeyBlob(key)).digest().subarray(0, 8).toString('hex');
}

/** The ECDSA hash Pollen and SSH use with the key's curve: SHA-256 for P-256, SHA-384 for P-384. */
export function ecdsaHashFor(key: KeyObject | SshPublicKey): 'sha256' | 'sha384' {
  return 'blob' in key ? CURVES[key.type].hash : specForKey(key).hash;
}

const OPENSSH_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const OPENSSH_END = '-----END OPENSSH PRIVATE KEY-----';
const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');

/**
 * Parse a private key file: OpenSSH (`ssh-keygen -t ecdsa -b 256|384 -N ''`), or a PEM PKCS#8 /
 * SEC1 EC private key on the same curves. The public half is recomputed from the private scalar.
 */
export function parseSshPrivateKey(text: string | Buffer): SshPrivateKey {
  const s = typeof text === 'string' ? text : text.toString('latin1');
  if (s.includes(OPENSSH_BEGIN)) return parseOpensshPrivateKey(s);
  if (/-----BEGIN (EC |ENCRYPTED )?PRIVATE KEY-----/.test(s)) return parsePemPrivateKey(s);
  if (/-----BEGIN (RSA|DSA) PRIVATE KEY-----/.test(s)) throw unsupported(/BEGIN (\w+)/.exec(s)![1]!);
  throw invalid('Not a private key: expected "-----BEGIN OPENSSH PRIVATE KEY-----"');
}

function parseOpensshPrivateKey(s: string): SshPrivateKey {
  const start = s.indexOf(OPENSSH_BEGIN) + OPENSSH_BEGIN.length;
  const end = s.indexOf(OPENSSH_END, start);
  if (end < 0) throw invalid('The OpenSSH private key has no END line (truncated?)');
  const b64 = s.slice(start, end).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw invalid('The OpenSSH private key is not valid base64');
  const data = Buffer.from(b64, 'base64');
  if (data.length < MAGIC.length || !data.subarray(0, MAGIC.length).equals(MAGIC))
    throw invalid('Not an openssh-key-v1 private key');

  const r = new WireReader(data.subarray(MAGIC.length), 'OpenSSH private key');
  const cipher = r.text();
  const kdf = r.text();
  r.string(); // kdf options
  const count = r.uint32();
  if (count !== 1) throw invalid(`The file holds ${count} keys; expected exactly one`);
  const publicBlob = r.string();
  const sealed = r.string();
  if (r.remaining !== 0) throw invalid('The OpenSSH private key has trailing bytes');

  // The public blob is in clear even in encrypted files: refuse the wrong type before asking
  // for a decrypted copy that would be refused anyway.
  const type = new WireReader(publicBlob, 'SSH public key').text();
  const spec = curveOf(type);
  if (cipher !== 'none' || kdf !== 'none')
    throw new PollenError('SSH_KEY_ENCRYPTED', 'The OpenSSH private key is encrypted with a passphrase', {
      detail: `cipher ${printable(cipher)}, kdf ${printable(kdf)}`,
    });

  const p = new WireReader(sealed, 'OpenSSH private key');
  // Two equal random check-ints: a wrong passphrase (or corruption) makes them differ.
  const check1 = p.uint32();
  const check2 = p.uint32();
  if (check1 !== check2) throw invalid('The OpenSSH private key check-ints differ (corrupt file)');
  const innerType = p.text();
  if (innerType !== type)
    throw invalid(`The private section holds ${printable(innerType)}, the header ${printable(type)}`);
  const curve = p.text();
  if (curve !== spec.sshCurve) throw invalid(`The key says ${type} but names curve ${printable(curve)}`);
  const q = p.string();
  const d = p.string(); // mpint: big-endian, a leading 0 when the top bit is set
  const comment = p.string().toString('utf8');
  const padding = p.rest();
  // OpenSSH pads with 1, 2, 3, … to the cipher block size (8 for 'none') and checks it.
  if (padding.length >= 8 || padding.some((b, i) => b !== i + 1))
    throw invalid('The OpenSSH private key padding is wrong (corrupt file)');

  // A negative mpint (top bit set) or one longer than the field is not a private scalar.
  if (d.length === 0 || d[0]! & 0x80) throw invalid('The OpenSSH private scalar is malformed');
  let zeros = 0;
  while (zeros < d.length && d[zeros] === 0) zeros++;
  const scalar = d.subarray(zeros);
  if (scalar.length === 0 || scalar.length > spec.size)
    throw invalid('The OpenSSH private scalar is malformed');
  const dFixed = Buffer.concat([Buffer.alloc(spec.size - scalar.length), scalar]);
  const privateKey = privateFromScalar(dFixed, spec);
  const publicKey = parseSshPublicKeyBlob(buildBlob(spec, pointOf(privateKey, spec)), comment);
  // The file stores Q twice; both must be d·G or the file was tampered with.
  if (!publicKey.blob.equals(publicBlob) || !publicKey.blob.equals(buildBlob(spec, q)))
    throw invalid('The OpenSSH public key does not match its private key');
  return { type: spec.type, privateKey, publicKey };
}

/** Build the private KeyObject from d alone: Node's JWK import would trust any x, y given with d. */
function privateFromScalar(d: Buffer, spec: CurveSpec): KeyObject {
  let q: Buffer;
  try {
    const ecdh = createECDH(spec.opensslCurve);
    ecdh.setPrivateKey(d); // refuses d = 0 or d >= n
    q = ecdh.getPublicKey();
  } catch (e) {
    throw new PollenError('SSH_KEY_INVALID', 'The OpenSSH private scalar is out of range', { cause: e });
  }
  const { x, y } = splitPoint(q, spec);
  return createPrivateKey({
    key: {
      kty: 'EC',
      crv: spec.jwkCurve,
      x: x.toString('base64url'),
      y: y.toString('base64url'),
      d: d.toString('base64url'),
    },
    format: 'jwk',
  });
}

function parsePemPrivateKey(s: string): SshPrivateKey {
  if (s.includes('BEGIN ENCRYPTED PRIVATE KEY') || /Proc-Type:\s*4,ENCRYPTED/.test(s))
    throw new PollenError('SSH_KEY_ENCRYPTED', 'The PEM private key is encrypted with a passphrase', {
      hint: 'Give an unencrypted key: `openssl pkey -in KEY -out KEY.plain`.',
    });
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: s, format: 'pem' });
  } catch (e) {
    throw new PollenError('SSH_KEY_INVALID', 'Not a readable PEM private key', {
      cause: e,
      detail: e instanceof Error ? e.message : String(e),
    });
  }
  const spec = specForKey(key);
  return {
    type: spec.type,
    privateKey: key,
    publicKey: parseSshPublicKeyBlob(buildBlob(spec, pointOf(key, spec))),
  };
}
