/**
 * `pollen cert rotate intermediate`: a new online intermediate signed by the offline root. The old
 * intermediate stays in the chain (and its key in the folder, for its CRLs) until it expires, so
 * every certificate it signed stays valid until its own expiry; new certificates use the new one.
 */
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PollenError } from '../errors.js';
import { writeFileAtomic, writeSecretFile } from '../util/files.js';
import { CA_FILES, type CaMeta, issueIntermediate, loadCa } from './ca.js';
import { certificateFingerprint } from './fingerprint.js';
import { importPrivateKeyPem, privateKeyToPem } from './keys.js';

export interface IntermediateRotation {
  caDir: string;
  fingerprint: string;
  notAfter: string;
  /** The intermediate it replaces: in the chain until `previousNotAfter`. */
  previousFingerprint: string;
  previousNotAfter: string;
  /** Every intermediate in the chain now (current first). */
  chain: string[];
}

/** The root key from `rootKeyPath` (an offline copy) or the CA folder; unlocked with `passphrase`. */
async function unlockRootKey(dir: string, rootKeyPath: string | undefined, passphrase: string | undefined) {
  const path = resolve(rootKeyPath ?? join(dir, CA_FILES.rootKey));
  if (!existsSync(path))
    throw new PollenError('FILE_NOT_FOUND', `No root key at ${path}`, {
      hint: 'Give the offline root key with --root-key FILE (e.g. on the removable disk it is kept on).',
    });
  return (await importPrivateKeyPem(readFileSync(path), passphrase)).cryptoKey;
}

export async function rotateIntermediate(
  caDir: string,
  o: { rootKeyPath?: string; passphrase?: string; now?: Date } = {},
): Promise<IntermediateRotation> {
  const dir = resolve(caDir);
  const now = o.now ?? new Date();
  const ca = await loadCa(dir);
  const rootKey = await unlockRootKey(dir, o.rootKeyPath, o.passphrase);
  const old = ca.intermediate;
  // As long as the one it replaces lived, never past the root.
  const life = old.notAfter.getTime() - old.notBefore.getTime();
  const notAfter = new Date(Math.min(now.getTime() + life, ca.root.notAfter.getTime()));
  const mismatch = (cause?: unknown) =>
    new PollenError('CA_ROOT_KEY_MISMATCH', "The root key given is not this CA's root key", {
      detail: `root ${ca.rootFingerprint}`,
      cause,
    });
  let issued: Awaited<ReturnType<typeof issueIntermediate>>;
  try {
    issued = await issueIntermediate({
      name: ca.meta.name,
      keyType: ca.meta.keyType,
      root: ca.root,
      rootKey,
      notBefore: now,
      notAfter,
    });
  } catch (e) {
    throw mismatch(e); // a key of another type than the root's
  }
  const { intermediate, interKeys } = issued;
  // Nothing is written before the new intermediate is known to chain to this root.
  if (!(await intermediate.verify({ publicKey: ca.root, signatureOnly: true }))) throw mismatch();
  const oldFingerprint = certificateFingerprint(new Uint8Array(old.rawData));
  const tag = oldFingerprint
    .replace(/[^0-9A-Fa-f]/g, '')
    .slice(0, 16)
    .toLowerCase();
  const retiredCert = `intermediateCA-${tag}.pem`;
  const retiredKey = `intermediateCA-${tag}.key`;
  if (existsSync(join(dir, retiredCert)))
    throw new PollenError(
      'CA_EXISTS',
      `${join(dir, retiredCert)} exists already; the folder is inconsistent`,
    );
  // The old pair keeps its files under its fingerprint (its key still signs its CRLs).
  renameSync(join(dir, CA_FILES.intermediateKey), join(dir, retiredKey));
  renameSync(join(dir, CA_FILES.intermediateCert), join(dir, retiredCert));
  const pem = intermediate.toString('pem');
  const fingerprint = certificateFingerprint(new Uint8Array(intermediate.rawData));
  writeSecretFile(join(dir, CA_FILES.intermediateKey), await privateKeyToPem(interKeys.privateKey));
  writeFileAtomic(join(dir, CA_FILES.intermediateCert), `${pem}\n`);
  const kept = (ca.meta.retiredIntermediates ?? []).filter((f) =>
    ca.intermediatePems.includes(readFileSync(join(dir, f), 'utf8').trim()),
  );
  const meta: CaMeta = {
    ...ca.meta,
    intermediateFingerprint: fingerprint,
    retiredIntermediates: [retiredCert, ...kept],
  };
  writeFileAtomic(join(dir, CA_FILES.meta), `${JSON.stringify(meta, null, 2)}\n`);
  const next = await loadCa(dir);
  writeFileAtomic(join(dir, CA_FILES.chain), next.chainPem);
  return {
    caDir: dir,
    fingerprint,
    notAfter: notAfter.toISOString(),
    previousFingerprint: oldFingerprint,
    previousNotAfter: old.notAfter.toISOString(),
    chain: next.intermediatePems.map((p) => certificateFingerprint(p)),
  };
}
