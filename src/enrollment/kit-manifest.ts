/**
 * The signed manifest of a startup kit. `startup/manifest.json` lists every file `pollen package`
 * wrote (path, size, SHA-256, mode) except secrets and the signature itself; with the project CA
 * at hand it is signed with the online intermediate key into `startup/manifest.sig`, and the
 * signer chain and the root go along (`startup/manifest-signer.pem`, `startup/rootCA.pem`).
 *
 * `verifyKit` checks a kit a site received: the signature, that the signer is a CA certificate
 * chaining to the kit's rootCA.pem, that the root matches every fingerprint at hand, and every
 * file. A site certificate also chains to the root, so only CA certificates may sign kits.
 *
 * A signature only proves that the kit is intact under the root it carries: a kit replaced
 * wholesale (another CA, its own manifest, signature, enrollment.json and token) verifies just as
 * well. Only a pin the site got independently of the kit ties it to the project: the root
 * fingerprint from the project admin, or a token the site was given itself. The fingerprints in
 * startup/enrollment.json and startup/enrollment_token are checked for consistency, but they
 * travel with the kit and are weak: they never make a kit `pinned`.
 */
import { createHash, type KeyObject, sign, verify, X509Certificate } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';
import { z } from 'zod';
import { PollenError } from '../errors.js';
import { certificateFingerprint, normaliseFingerprint, sameFingerprint } from '../pki/fingerprint.js';
import { chainsToRoot, parseCertificates } from '../pki/verify.js';
import { VERSION } from '../version.js';
import { loadKit } from './kit/load.js';
import type { KitFile } from './kit/plan.js';
import type { KitSpec } from './kit/spec.js';
import { certFileNames, KIT_PATHS } from './kit/vocabulary.js';
import { decodeToken } from './token.js';

export const MANIFEST_FORMAT = 'pollen-kit-manifest/v1';

export const MANIFEST_PATHS = {
  manifest: 'startup/manifest.json',
  signature: 'startup/manifest.sig',
  signer: 'startup/manifest-signer.pem',
} as const;

export interface ManifestEntry {
  path: string;
  size: number;
  /** Lowercase hex. */
  sha256: string;
  /** Octal permission bits, e.g. "0755". */
  mode: string;
}

export interface KitManifest {
  format: typeof MANIFEST_FORMAT;
  pollenVersion: string;
  createdAt: string;
  kit: { name: string; type: string; org: string };
  /** The project root the kit belongs to, when known. */
  rootCaFingerprint: string | null;
  /** The CA certificate that signed this manifest; null for an unsigned kit. */
  signer: { subject: string; fingerprint: string } | null;
  files: ManifestEntry[];
}

const SAFE_PATH = /^(?!\/)(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9._@+ -]+(?:\/[A-Za-z0-9._@+ -]+)*$/;

const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  pollenVersion: z.string(),
  createdAt: z.string(),
  kit: z.object({ name: z.string(), type: z.string(), org: z.string() }),
  rootCaFingerprint: z.string().nullable(),
  signer: z.object({ subject: z.string(), fingerprint: z.string() }).nullable(),
  files: z.array(
    z.object({
      path: z.string().regex(SAFE_PATH),
      size: z.number().int().min(0),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      mode: z.string().regex(/^0[0-7]{3}$/),
    }),
  ),
});

/** Files the manifest never lists: itself, its signature and signer, secrets and private keys. */
export function excludedFromManifest(path: string): boolean {
  return (
    path === MANIFEST_PATHS.manifest ||
    path === MANIFEST_PATHS.signature ||
    path === MANIFEST_PATHS.signer ||
    path === KIT_PATHS.token ||
    /\.key(\.next)?$/.test(path)
  );
}

/**
 * Files a site adds to startup/ after packaging (certificate, key, root, chain, token, enrollment
 * state, renewal leftovers). Anything else in startup/ that the manifest does not list is
 * reported as unexpected; outside startup/ the site may add what it likes (custom code, data).
 */
export function siteOwnedStartupFiles(name: string): Set<string> {
  const { cert, key } = certFileNames(name);
  return new Set(
    [
      cert,
      key,
      `${cert}.next`,
      `${key}.next`,
      'rootCA.pem',
      'chain.pem',
      'enrollment_token',
      'enrollment_state.json',
      'manifest.json',
      'manifest.sig',
      'manifest-signer.pem',
    ].map((f) => `startup/${f}`),
  );
}

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;

export function manifestEntry(path: string, content: Buffer, mode: number): ManifestEntry {
  return {
    path,
    size: content.length,
    sha256: createHash('sha256').update(content).digest('hex'),
    mode: octal(mode),
  };
}

export function createManifest(
  spec: Pick<KitSpec, 'name' | 'type' | 'org' | 'createdAt'>,
  files: readonly KitFile[],
  opts: { rootCaFingerprint: string | null; signer: KitManifest['signer'] },
): KitManifest {
  return {
    format: MANIFEST_FORMAT,
    pollenVersion: VERSION,
    createdAt: spec.createdAt.toISOString(),
    kit: { name: spec.name, type: spec.type, org: spec.org },
    rootCaFingerprint: opts.rootCaFingerprint,
    signer: opts.signer,
    files: files
      .filter((f) => !f.secret && !excludedFromManifest(f.path))
      .map((f) => manifestEntry(f.path, f.content, f.mode))
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
  };
}

/** Sign the exact manifest bytes: ECDSA (DER) or RSA PKCS#1 v1.5, with SHA-256. */
export function signManifest(bytes: Uint8Array, key: KeyObject): Buffer {
  return sign('sha256', bytes, { key, dsaEncoding: 'der' });
}

export function verifyManifestSignature(
  bytes: Uint8Array,
  signature: Uint8Array,
  signer: X509Certificate,
): boolean {
  try {
    return verify('sha256', bytes, { key: signer.publicKey, dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Verification

/**
 * Where a pin comes from: `argument` (a root fingerprint the caller was given) and `token` (a token
 * the caller was given) are independent of the kit; `enrollment_token` and `enrollment.json` are
 * files inside the kit, which a forged kit brings along.
 */
export type PinSource = 'argument' | 'token' | 'enrollment_token' | 'enrollment.json';

export interface KitPin {
  source: PinSource;
  fingerprint: string;
  /** Whether the kit's root matches (null: no root to compare). */
  matches: boolean | null;
  /** Given by the caller, not read from the kit: only such a pin can vouch for the kit. */
  independent: boolean;
}

export interface KitVerification {
  dir: string;
  name: string;
  type: string;
  signature: 'valid' | 'invalid' | 'absent';
  signer: { subject: string; fingerprint: string; notAfter: string } | null;
  /** Fingerprint of startup/rootCA.pem, when present. */
  rootCaFingerprint: string | null;
  /** Every root fingerprint at hand (given, or read from the kit), and whether the root matches. */
  pins: KitPin[];
  /** Problems with the signature or the signer chain. */
  errors: string[];
  files: number;
  changed: Array<{ path: string; reasons: string[] }>;
  missing: string[];
  unexpected: string[];
  /** Signature valid, chain good, every pin matched, no changed, missing or unexpected file. */
  ok: boolean;
  /**
   * The kit is tied to the project: its signature is valid and an independent pin (given by the
   * caller, never one read from the kit) matches its root. `ok` without `pinned` only means the
   * kit is intact under whatever root it carries.
   */
  pinned: boolean;
}

export interface VerifyKitOptions {
  /** The root CA fingerprint the site was given out of band: an independent pin. */
  rootFingerprint?: string;
  /**
   * A token the site was given itself (not the kit's startup/enrollment_token): an independent pin.
   * The kit's own token file, when present, is always checked too, as a weak pin.
   */
  token?: string;
  now?: Date;
}

/** Every regular file, symlink or other non-folder under dir (symlinks are not followed). */
function listFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(dir, p));
    else out.push(p);
  }
  return out;
}

function readManifest(dir: string): { bytes: Buffer; manifest: KitManifest } {
  const path = join(dir, MANIFEST_PATHS.manifest);
  if (!existsSync(path))
    throw new PollenError('KIT_UNSIGNED', `${dir} has no ${MANIFEST_PATHS.manifest}: it cannot be checked`, {
      hint: 'Ask for a kit made by `pollen package` with the project CA (-c).',
    });
  const bytes = readFileSync(path);
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new PollenError('KIT_TAMPERED', `${path} is not valid JSON`, { cause: e });
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success)
    throw new PollenError('KIT_TAMPERED', `${path} is not a Pollen kit manifest`, {
      detail: parsed.error.message,
    });
  return { bytes, manifest: parsed.data as KitManifest };
}

/** Check a kit: signature, signer chain, root pins and every file. Never throws for a mere mismatch. */
export function verifyKit(dirIn: string, opts: VerifyKitOptions = {}): KitVerification {
  const dir = resolve(dirIn);
  const kit = loadKit(dir);
  const now = opts.now ?? new Date();
  const { bytes, manifest } = readManifest(dir);
  const errors: string[] = [];
  if (manifest.kit.name !== kit.config.name || manifest.kit.type !== kit.config.type)
    errors.push(`the manifest is for ${manifest.kit.type} "${manifest.kit.name}", not this kit`);

  // The kit's root.
  let root: X509Certificate | null = null;
  if (existsSync(kit.paths.rootCa)) {
    try {
      root = new X509Certificate(readFileSync(kit.paths.rootCa));
    } catch {
      errors.push(`${KIT_PATHS.rootCa} is not a PEM certificate`);
    }
  }
  const rootCaFingerprint = root ? certificateFingerprint(root) : null;

  // Signature and signer chain.
  let signature: KitVerification['signature'] = 'absent';
  let signer: KitVerification['signer'] = null;
  const sigPath = join(dir, MANIFEST_PATHS.signature);
  if (existsSync(sigPath)) {
    signature = 'invalid';
    let certs: X509Certificate[] = [];
    try {
      certs = parseCertificates(readFileSync(join(dir, MANIFEST_PATHS.signer), 'utf8'));
    } catch {
      certs = [];
    }
    const leaf = certs[0];
    if (!leaf) errors.push(`${MANIFEST_PATHS.signer} is missing or holds no certificate`);
    else {
      const fp = certificateFingerprint(leaf);
      signer = {
        subject: leaf.subject.replace(/\n/g, ', '),
        fingerprint: fp,
        notAfter: new Date(leaf.validTo).toISOString(),
      };
      const sig = Buffer.from(readFileSync(sigPath, 'utf8').trim(), 'base64');
      if (!verifyManifestSignature(bytes, sig, leaf)) errors.push('the manifest signature does not verify');
      else if (!manifest.signer || !sameFingerprint(manifest.signer.fingerprint, fp))
        errors.push('the manifest names another signer than the one that signed it');
      else if (!leaf.ca) errors.push('the manifest was signed by a certificate that is not a CA certificate');
      else if (!root) errors.push(`${KIT_PATHS.rootCa} is missing: the signer cannot be checked`);
      else {
        const signedAt = new Date(manifest.createdAt);
        if (Number.isNaN(signedAt.getTime()) || signedAt.getTime() > now.getTime() + 5 * 60_000)
          errors.push('the manifest creation time is invalid or in the future');
        else {
          const chain = chainsToRoot(leaf, certs.slice(1), root, signedAt);
          if (!chain.ok)
            errors.push(`the manifest signer does not chain to ${KIT_PATHS.rootCa}: ${chain.reason}`);
          else signature = 'valid';
        }
      }
    }
  }
  if (
    manifest.rootCaFingerprint &&
    rootCaFingerprint &&
    !sameFingerprint(manifest.rootCaFingerprint, rootCaFingerprint)
  )
    errors.push(`${KIT_PATHS.rootCa} is not the root the manifest names`);

  // Pins the site was given.
  const pins: KitPin[] = [];
  const addPin = (source: PinSource, value: string | undefined) => {
    if (value === undefined) return;
    const fingerprint = normaliseFingerprint(value);
    if (!fingerprint) {
      errors.push(`the ${source} root fingerprint "${value}" is malformed`);
      return;
    }
    pins.push({
      source,
      fingerprint,
      matches: rootCaFingerprint ? fingerprint === rootCaFingerprint : null,
      independent: source === 'argument' || source === 'token',
    });
  };
  const tokenPin = (token: string | undefined) => {
    if (!token) return undefined;
    try {
      return decodeToken(token).pollen.root_ca_fingerprint;
    } catch {
      return undefined; // not a token: it gives no pin (pollen start reports it)
    }
  };
  addPin('argument', opts.rootFingerprint);
  const given = opts.token?.trim();
  addPin('token', tokenPin(given));
  // The kit's own token: checked for consistency, but it came with the kit and vouches for nothing.
  const kitToken = existsSync(kit.paths.token) ? readFileSync(kit.paths.token, 'utf8').trim() : undefined;
  if (kitToken !== given) addPin('enrollment_token', tokenPin(kitToken));
  addPin('enrollment.json', kit.enrollment?.rootCaFingerprint);

  // Files.
  const listed = new Map(manifest.files.map((f) => [f.path, f]));
  const changed: KitVerification['changed'] = [];
  const missing: string[] = [];
  for (const entry of manifest.files) {
    const abs = join(dir, ...entry.path.split('/'));
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(abs);
    } catch {
      missing.push(entry.path);
      continue;
    }
    if (!st.isFile()) {
      changed.push({ path: entry.path, reasons: ['not a regular file'] });
      continue;
    }
    const reasons: string[] = [];
    const content = readFileSync(abs);
    if (content.length !== entry.size) reasons.push(`size ${content.length}, expected ${entry.size}`);
    if (createHash('sha256').update(content).digest('hex') !== entry.sha256)
      reasons.push('content (SHA-256) differs');
    const expected = Number.parseInt(entry.mode, 8);
    const actual = st.mode & 0o777;
    // Tightened permissions are fine (a umask on copy); new write or changed execute bits are not.
    if ((actual & ~expected & 0o022) !== 0 || (actual & 0o100) !== (expected & 0o100))
      reasons.push(`mode ${octal(actual)}, expected ${entry.mode}`);
    if (reasons.length > 0) changed.push({ path: entry.path, reasons });
  }
  const siteOwned = siteOwnedStartupFiles(kit.config.name);
  const unexpected = listFiles(dir, KIT_PATHS.startup)
    .map((p) => posix.normalize(p))
    .filter((p) => !listed.has(p) && !siteOwned.has(p));

  const ok =
    signature === 'valid' &&
    errors.length === 0 &&
    pins.every((p) => p.matches === true) &&
    changed.length === 0 &&
    missing.length === 0 &&
    unexpected.length === 0;
  const pinned = signature === 'valid' && pins.some((p) => p.independent && p.matches === true);
  return {
    dir,
    name: kit.config.name,
    type: kit.config.type,
    signature,
    signer,
    rootCaFingerprint,
    pins,
    errors,
    files: manifest.files.length,
    changed,
    missing,
    unexpected,
    ok,
    pinned,
  };
}

/**
 * Turn a verification into the error a caller should stop with, if any: a root that does not
 * match a pin → CA_FINGERPRINT_MISMATCH; any other problem → KIT_TAMPERED; a clean but unsigned
 * kit → KIT_UNSIGNED unless allowed; with `requirePin`, a kit no independent pin vouches for →
 * KIT_UNPINNED.
 */
export function kitVerificationError(
  v: KitVerification,
  opts: { allowUnsigned?: boolean; requirePin?: boolean } = {},
): PollenError | null {
  const data = {
    signature: v.signature,
    errors: v.errors,
    pins: v.pins,
    changed: v.changed,
    missing: v.missing,
    unexpected: v.unexpected,
  };
  const mismatched = v.pins.filter((p) => p.matches === false);
  if (mismatched.length > 0)
    return new PollenError(
      'CA_FINGERPRINT_MISMATCH',
      `The kit's root CA ${v.rootCaFingerprint} does not match the ${mismatched.map((p) => `${p.source} pin ${p.fingerprint}`).join(', ')}`,
      { data },
    );
  const problems =
    v.errors.length +
    v.changed.length +
    v.missing.length +
    v.unexpected.length +
    (v.signature === 'invalid' ? 1 : 0);
  if (problems > 0)
    return new PollenError(
      'KIT_TAMPERED',
      `The kit ${v.dir} failed verification: ${[
        ...v.errors,
        ...(v.changed.length ? [`${v.changed.length} changed`] : []),
        ...(v.missing.length ? [`${v.missing.length} missing`] : []),
        ...(v.unexpected.length ? [`${v.unexpected.length} unexpected`] : []),
      ].join('; ')}`,
      { data },
    );
  if (v.signature === 'absent' && !opts.allowUnsigned)
    return new PollenError('KIT_UNSIGNED', `The kit ${v.dir} is not signed: its origin cannot be checked`, {
      data,
    });
  if (opts.requirePin && !v.pinned) {
    const weak = v.pins.filter((p) => !p.independent).map((p) => p.source);
    return new PollenError(
      'KIT_UNPINNED',
      v.signature !== 'valid'
        ? `The kit ${v.dir} is not signed: no pin can tie its files to the project root`
        : `The kit ${v.dir} has no independent pin: its root CA ${v.rootCaFingerprint} was not checked against a fingerprint or token you were given${weak.length > 0 ? ` (${weak.join(' and ')} came with the kit and cannot vouch for it)` : ''}`,
      { data },
    );
  }
  return null;
}
