/**
 * App bundles (`NAME-VERSION.pollen`): one file holding a built app, named by its SHA-256.
 *
 * Format: a POSIX ustar archive written canonically, so the same files give the same bytes:
 * regular files only, `pollen.json` (the manifest) first and the other files sorted by name,
 * mode 0644, uid/gid 0, empty user/group names, mtime 0, names of at most 100 bytes (no prefix
 * field), closed by two zero blocks. `tar -tvf` lists it. The reader accepts only that form and
 * checks every file against the manifest (size and SHA-256), so a bundle is trusted as a whole
 * or refused (BUNDLE_INVALID).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { PollenError } from '../errors.js';

export const MANIFEST_FILE = 'pollen.json';
export const BUNDLE_EXTENSION = '.pollen';
/** Bundle size limit: far above an app with a model library and a small dataset. */
export const MAX_BUNDLE_BYTES = 256 * 1024 * 1024;
export const MAX_BUNDLE_FILES = 10_000;

const BLOCK = 512;
const NAME_BYTES = 100;
/** Relative path of plain segments: no absolute path, no `.`/`..`, no backslash or control byte. */
const SAFE_PATH = /^(?!.*(?:^|\/)\.{1,2}(?:\/|$))[A-Za-z0-9._@+-]+(?:\/[A-Za-z0-9._@+-]+)*$/;

const configValue = z.union([z.number(), z.string(), z.boolean()]);
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/** A Python app's component: `package.module:attr`, or `pollen:NAME` for a built-in ServerApp. */
export const PYTHON_REF = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$/;

export const manifestSchema = z.strictObject({
  format: z.literal(1),
  name: z.string().min(1).max(214),
  version: z.string().min(1).max(64),
  /** Absent: a TypeScript app (entry files); `python`: components are module references. */
  runtime: z.literal('python').optional(),
  /** An entry file of the bundle (TypeScript) or a module reference (Python). */
  serverapp: z.string().regex(SAFE_PATH).or(z.string().regex(PYTHON_REF)),
  clientapp: z.string().regex(SAFE_PATH).or(z.string().regex(PYTHON_REF)),
  /** Python apps: the distributions the site's interpreter must have (PEP 508), never installed. */
  requirements: z.array(z.string().min(1).max(500)).max(500).optional(),
  config: z.record(z.string(), configValue),
  /** Version of the `pollen` package the app was built with (the runtime provides pollen/sdk). */
  sdkVersion: z.string(),
  files: z.array(
    z.strictObject({ path: z.string().regex(SAFE_PATH), size: z.number().int().min(0), sha256: sha256Hex }),
  ),
});
export type BundleManifest = z.infer<typeof manifestSchema>;

export interface BundleFile {
  path: string;
  data: Uint8Array;
}

export interface Bundle {
  /** `sha256:HEX` of the archive bytes. */
  hash: string;
  manifest: BundleManifest;
  /** Every file but the manifest, in archive order. */
  files: BundleFile[];
}

export interface ExtractedBundle {
  hash: string;
  dir: string;
  manifest: BundleManifest;
  serverappPath: string;
  clientappPath: string;
}

function invalid(message: string): PollenError {
  return new PollenError('BUNDLE_INVALID', message);
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** `sha256:HEX` of a bundle's bytes: its identity everywhere (store, wire, cache folder). */
export function bundleHash(bytes: Uint8Array): string {
  return `sha256:${sha256(bytes)}`;
}

/** Sort order of entries: the manifest first, then byte order of the names. */
export function compareEntries(a: string, b: string): number {
  if (a === b) return 0;
  if (a === MANIFEST_FILE) return -1;
  if (b === MANIFEST_FILE) return 1;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function isSafePath(path: string): boolean {
  return SAFE_PATH.test(path) && Buffer.byteLength(path) <= NAME_BYTES;
}

// --- ustar ------------------------------------------------------------------------------------

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(name: string, size: number): Uint8Array {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 'utf8');
  h.write(octal(0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(0, 12), 136, 'ascii'); // mtime
  h.fill(0x20, 148, 156); // checksum counts as spaces while it is computed
  h.write('0', 156, 'ascii');
  h.write('ustar\u000000', 257, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** Write a canonical archive (entries are sorted here; names must be safe and unique). */
export function writeTar(files: readonly BundleFile[]): Uint8Array {
  const sorted = [...files].sort((a, b) => compareEntries(a.path, b.path));
  const parts: Uint8Array[] = [];
  sorted.forEach((f, i) => {
    if (!isSafePath(f.path)) throw invalid(`Unsafe or too long file name in the bundle: ${f.path}`);
    if (i > 0 && sorted[i - 1]?.path === f.path) throw invalid(`Duplicate file in the bundle: ${f.path}`);
    parts.push(header(f.path, f.data.length), f.data);
    const pad = (BLOCK - (f.data.length % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(new Uint8Array(pad));
  });
  parts.push(new Uint8Array(2 * BLOCK));
  return Buffer.concat(parts);
}

/** Parse a canonical archive: exactly what writeTar makes, else BUNDLE_INVALID. */
export function readTar(bytes: Uint8Array): BundleFile[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length % BLOCK !== 0 || buf.length < 2 * BLOCK) throw invalid('The bundle is not a ustar archive');
  const files: BundleFile[] = [];
  let off = 0;
  for (;;) {
    if (off + BLOCK > buf.length) throw invalid('The bundle ends without its end-of-archive blocks');
    const h = buf.subarray(off, off + BLOCK);
    if (h.every((b) => b === 0)) break;
    if (files.length >= MAX_BUNDLE_FILES)
      throw invalid(`The bundle holds more than ${MAX_BUNDLE_FILES} files`);
    const name = h.subarray(0, NAME_BYTES).toString('utf8').replace(/\0+$/, '');
    const size = Number.parseInt(h.subarray(124, 135).toString('ascii'), 8);
    if (!isSafePath(name)) throw invalid(`Unsafe file name in the bundle: ${JSON.stringify(name)}`);
    if (!Number.isSafeInteger(size) || off + BLOCK + size > buf.length)
      throw invalid(`File ${name} in the bundle has a bad size`);
    if (!Buffer.from(header(name, size)).equals(h))
      throw invalid(`File ${name}: only regular files with canonical headers are allowed`);
    const prev = files[files.length - 1];
    if (prev !== undefined && compareEntries(prev.path, name) >= 0)
      throw invalid(`File ${name} is a duplicate or out of order`);
    files.push({ path: name, data: buf.subarray(off + BLOCK, off + BLOCK + size) });
    off += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  if (buf.length !== off + 2 * BLOCK || !buf.subarray(off).every((b) => b === 0))
    throw invalid('The bundle has data after its end-of-archive blocks');
  return files;
}

// --- bundles ----------------------------------------------------------------------------------

/** Canonical manifest text (stable key order comes from the object the builder makes). */
export function manifestBytes(manifest: BundleManifest): Uint8Array {
  return Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
}

/** Verify and parse a bundle: canonical archive, valid manifest, every file listed and intact. */
export function readBundle(bytes: Uint8Array): Bundle {
  if (bytes.byteLength > MAX_BUNDLE_BYTES)
    throw invalid(`The bundle is larger than ${MAX_BUNDLE_BYTES} bytes`);
  const [first, ...files] = readTar(bytes);
  if (first?.path !== MANIFEST_FILE) throw invalid(`The bundle does not start with ${MANIFEST_FILE}`);
  let manifest: BundleManifest;
  try {
    manifest = manifestSchema.parse(JSON.parse(Buffer.from(first.data).toString('utf8')));
  } catch (e) {
    throw invalid(`The bundle manifest is not valid: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!Buffer.from(manifestBytes(manifest)).equals(first.data))
    throw invalid(`${MANIFEST_FILE} is not in canonical form`);
  const listed = new Map(manifest.files.map((f) => [f.path, f]));
  if (listed.size !== manifest.files.length || listed.size !== files.length)
    throw invalid('The bundle manifest does not list exactly the files of the bundle');
  for (const f of files) {
    const entry = listed.get(f.path);
    if (entry === undefined) throw invalid(`File ${f.path} is not in the manifest`);
    if (entry.size !== f.data.length || entry.sha256 !== sha256(f.data))
      throw invalid(`File ${f.path} does not match its size and SHA-256 in the manifest`);
  }
  if (manifest.runtime === undefined)
    for (const entry of [manifest.serverapp, manifest.clientapp])
      if (!listed.has(entry)) throw invalid(`The entry file ${entry} is not in the bundle`);
  if (manifest.runtime === 'python')
    for (const ref of [manifest.serverapp, manifest.clientapp])
      if (!PYTHON_REF.test(ref)) throw invalid(`${ref} is not a Python reference (module:attr)`);
  return { hash: bundleHash(bytes), manifest, files };
}

function extracted(hash: string, dir: string, manifest: BundleManifest): ExtractedBundle {
  return {
    hash,
    dir,
    manifest,
    serverappPath: join(dir, manifest.serverapp),
    clientappPath: join(dir, manifest.clientapp),
  };
}

/**
 * Verify a bundle and unpack it into `cacheDir/<hex>/` (written to a temporary folder, then
 * renamed, so a reader never sees half a bundle). An existing folder for the hash is reused.
 */
export async function extractBundle(bytes: Uint8Array, cacheDir: string): Promise<ExtractedBundle> {
  const bundle = readBundle(bytes);
  const dir = join(cacheDir, bundle.hash.slice('sha256:'.length));
  if (existsSync(join(dir, MANIFEST_FILE))) return reuse(bundle, dir);
  mkdirSync(cacheDir, { recursive: true });
  const tmp = mkdtempSync(join(cacheDir, '.extract-'));
  try {
    const manifestFile: BundleFile = { path: MANIFEST_FILE, data: manifestBytes(bundle.manifest) };
    for (const f of [manifestFile, ...bundle.files]) {
      const target = join(tmp, f.path);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, f.data, { mode: 0o644 });
    }
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // Another process extracted the same bundle first: theirs is as good as ours.
      const code = (e as NodeJS.ErrnoException).code;
      if ((code === 'EEXIST' || code === 'ENOTEMPTY') && existsSync(join(dir, MANIFEST_FILE)))
        return reuse(bundle, dir);
      throw e;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return extracted(bundle.hash, dir, bundle.manifest);
}

/**
 * The bundle `hash` as `extractBundle` left it in `cacheDir`, if it did: the folder is named by
 * the hash of bytes verified before they were unpacked, so a node that ran the bundle before
 * need not fetch it again. A folder whose manifest is not a valid, canonical one is ignored.
 */
export function extractedBundle(hash: string, cacheDir: string): ExtractedBundle | undefined {
  const hex = hash.startsWith('sha256:') ? hash.slice('sha256:'.length) : '';
  if (!/^[0-9a-f]{64}$/.test(hex)) return undefined;
  const dir = join(cacheDir, hex);
  let text: Buffer;
  try {
    text = readFileSync(join(dir, MANIFEST_FILE));
  } catch {
    return undefined;
  }
  const parsed = manifestSchema.safeParse(safeJson(text.toString('utf8')));
  if (!parsed.success || !text.equals(Buffer.from(manifestBytes(parsed.data)))) return undefined;
  return extracted(hash, dir, parsed.data);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A cached folder is used only if its manifest is this bundle's (the folder name is the hash). */
function reuse(bundle: Bundle, dir: string): ExtractedBundle {
  const onDisk = readFileSync(join(dir, MANIFEST_FILE));
  if (!onDisk.equals(Buffer.from(manifestBytes(bundle.manifest))))
    throw invalid(`The cached bundle in ${dir} does not match ${bundle.hash}: remove the folder`);
  return extracted(bundle.hash, dir, bundle.manifest);
}
