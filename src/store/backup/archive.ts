/**
 * The backup archive: files and a manifest, gzipped, then sealed with AES-256-GCM under a key
 * derived (scrypt) from the operator's passphrase. The header is the GCM's additional data, so the
 * one tag authenticates the whole file: change a byte anywhere — a file, its listed hash, the
 * component named in the header — and opening fails. Every archive is encrypted, so no archive
 * ever holds a plaintext private key.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  randomBytes,
  scryptSync,
  timingSafeEqual,
} from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { PollenError } from '../../errors.js';

export const COMPONENTS = ['superlink', 'cert-service', 'kit'] as const;
export type Component = (typeof COMPONENTS)[number];

const MAGIC = Buffer.from('POLLEN-BACKUP\n');
const FORMAT = 1;
const TAG_BYTES = 16;
/** scrypt at 32 MiB: about 0.1 s a try on a server, costly for a guesser. */
const SCRYPT = { N: 1 << 15, r: 8, p: 1 } as const;

/** One file of an archive, its path relative to the component's folder (always `/`). */
export interface ArchiveFile {
  path: string;
  mode: number;
  data: Buffer;
}

export interface ArchiveContents {
  component: Component;
  /** ISO time the snapshot was taken. */
  createdAt: string;
  /** How the store was captured: SQLite files among `files`, or a pg_dump (database.pgdump). */
  database: 'sqlite' | 'postgres' | 'none';
  /** Whether any file holds a private key (informational: every archive is encrypted). */
  privateKeys: boolean;
  files: ArchiveFile[];
}

interface Header {
  format: number;
  component: Component;
  createdAt: string;
  kdf: { name: 'scrypt'; salt: string; N: number; r: number; p: number };
  nonce: string;
  /** HMAC of a constant under the key: tells a wrong passphrase from a changed archive. */
  check: string;
}

interface ManifestEntry {
  path: string;
  mode: number;
  size: number;
  sha256: string;
}

function deriveKey(passphrase: string, kdf: Header['kdf']): Buffer {
  return scryptSync(passphrase, Buffer.from(kdf.salt, 'base64'), 32, {
    N: kdf.N,
    r: kdf.r,
    p: kdf.p,
    maxmem: 256 * kdf.N * kdf.r,
  });
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const checkValue = (key: Buffer): Buffer =>
  createHmac('sha256', key).update('pollen-backup passphrase check').digest().subarray(0, 16);

/** The sealed archive of `contents` under `passphrase` (`cost`: a lower scrypt N, for tests). */
export function sealArchive(
  contents: ArchiveContents,
  passphrase: string,
  cost: { N: number } = SCRYPT,
): Buffer {
  const manifest = {
    component: contents.component,
    createdAt: contents.createdAt,
    database: contents.database,
    privateKeys: contents.privateKeys,
    files: contents.files.map(
      (f): ManifestEntry => ({ path: f.path, mode: f.mode, size: f.data.length, sha256: sha256(f.data) }),
    ),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(manifestBytes.length);
  const plain = gzipSync(Buffer.concat([length, manifestBytes, ...contents.files.map((f) => f.data)]));
  const kdf = { name: 'scrypt' as const, salt: randomBytes(16).toString('base64'), ...SCRYPT, N: cost.N };
  const key = deriveKey(passphrase, kdf);
  const nonce = randomBytes(12);
  const header: Header = {
    format: FORMAT,
    component: contents.component,
    createdAt: contents.createdAt,
    kdf,
    nonce: nonce.toString('base64'),
    check: checkValue(key).toString('base64'),
  };
  const headerBytes = Buffer.from(JSON.stringify(header));
  const headerLength = Buffer.alloc(4);
  headerLength.writeUInt32BE(headerBytes.length);
  const aad = Buffer.concat([MAGIC, headerLength, headerBytes]);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([aad, body, cipher.getAuthTag()]);
}

const invalid = (why: string) => new PollenError('BACKUP_INVALID', `Not a Pollen backup archive: ${why}`);

/** What the archive's header says, before any passphrase (not yet authenticated). */
export function readHeader(archive: Buffer): { header: Header; aad: Buffer } {
  if (archive.length < MAGIC.length + 4 || !archive.subarray(0, MAGIC.length).equals(MAGIC))
    throw invalid('it does not start with the archive marker');
  const length = archive.readUInt32BE(MAGIC.length);
  const end = MAGIC.length + 4 + length;
  if (length > 64 * 1024 || end + TAG_BYTES > archive.length) throw invalid('its header is cut short');
  let header: Header;
  try {
    header = JSON.parse(archive.subarray(MAGIC.length + 4, end).toString('utf8')) as Header;
  } catch {
    throw invalid('its header is not readable');
  }
  if (header.format !== FORMAT || header.kdf?.name !== 'scrypt')
    throw invalid(`format ${String(header.format)} is not one this version reads`);
  // Bounds on what the (unauthenticated) header may make us spend on key derivation.
  const { N, r, p } = header.kdf;
  if (![N, r, p].every(Number.isInteger) || N < 2 || N > 1 << 20 || r < 1 || r > 32 || p < 1 || p > 16)
    throw invalid('its key derivation settings are out of range');
  return { header, aad: archive.subarray(0, end) };
}

/** The contents of an archive, after checking it was written whole with this passphrase. */
export function openArchive(archive: Buffer, passphrase: string): ArchiveContents {
  const { header, aad } = readHeader(archive);
  const key = deriveKey(passphrase, header.kdf);
  const check = Buffer.from(String(header.check), 'base64');
  const expected = checkValue(key);
  if (check.length !== expected.length || !timingSafeEqual(check, expected))
    throw new PollenError('BACKUP_WRONG_PASSPHRASE', 'The passphrase does not open this archive');
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(header.nonce, 'base64'));
  decipher.setAAD(aad);
  decipher.setAuthTag(archive.subarray(archive.length - TAG_BYTES));
  let plain: Buffer;
  try {
    plain = Buffer.concat([
      decipher.update(archive.subarray(aad.length, archive.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new PollenError(
      'BACKUP_TAMPERED',
      'The archive does not authenticate: it was changed after it was written',
    );
  }
  return unpack(gunzipSync(plain), header);
}

/** The manifest and files of an authenticated payload (checked again, file by file). */
function unpack(payload: Buffer, header: Header): ArchiveContents {
  const length = payload.readUInt32BE(0);
  const manifest = JSON.parse(payload.subarray(4, 4 + length).toString('utf8')) as Omit<
    ArchiveContents,
    'files'
  > & {
    files: ManifestEntry[];
  };
  if (manifest.component !== header.component)
    throw new PollenError('BACKUP_TAMPERED', 'The archive names two components');
  let at = 4 + length;
  const files = manifest.files.map((e) => {
    const data = payload.subarray(at, at + e.size);
    at += e.size;
    if (sha256(data) !== e.sha256)
      throw new PollenError('BACKUP_TAMPERED', `The archive's copy of ${e.path} does not match its manifest`);
    return { path: e.path, mode: e.mode, data };
  });
  return { ...manifest, files };
}
