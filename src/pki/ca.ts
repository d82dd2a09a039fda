import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PollenError } from '../errors.js';
import { writeNewFile } from '../util/files.js';
import { certificateFingerprint } from './fingerprint.js';
import {
  generateKeyPair,
  importPrivateKeyPem,
  type KeyType,
  keyTypeInfo,
  privateKeyToPem,
  signingAlgorithm,
  x509,
} from './keys.js';
import { type Issuer, makeIssuer, randomSerial } from './profiles.js';

/** File names inside a CA folder; `pollen cert init` writes them, everything else reads them. */
export const CA_FILES = {
  rootCert: 'rootCA.pem',
  rootKey: 'rootCA.key',
  intermediateCert: 'intermediateCA.pem',
  intermediateKey: 'intermediateCA.key',
  chain: 'chain.pem',
  tokenKey: 'token.key',
  meta: 'ca.json',
} as const;

export interface CaMeta {
  version: 1;
  name: string;
  keyType: KeyType;
  createdAt: string;
  rootFingerprint: string;
  intermediateFingerprint: string;
  rootEncrypted: boolean;
  /** Earlier intermediates (files in the CA folder), kept while certificates they signed may be valid. */
  retiredIntermediates?: string[];
}

export interface InitCaOptions {
  name: string;
  dir: string;
  keyType?: KeyType;
  validityDays?: number;
  passphrase?: string;
  now?: Date;
}

const DAY = 86_400_000;

/**
 * Create a project CA: an offline root (passphrase-encrypted when one is given), an online
 * intermediate that signs site certificates and CRLs, and a separate P-256 key that signs
 * enrollment tokens. Refuses to touch a folder that already holds a CA.
 */
export async function initCa(o: InitCaOptions): Promise<CaMeta & { dir: string }> {
  const dir = resolve(o.dir);
  const keyType = o.keyType ?? 'ec-p384';
  const info = keyTypeInfo(keyType);
  const now = o.now ?? new Date();
  const validity = (o.validityDays ?? 3650) * DAY;
  for (const f of [CA_FILES.rootKey, CA_FILES.rootCert, CA_FILES.meta])
    if (existsSync(join(dir, f)))
      throw new PollenError('CA_EXISTS', `A CA already exists in ${dir}`, { data: { path: dir } });
  if (!o.name.trim()) throw new PollenError('INVALID_ARGUMENT', 'The project name is empty');
  mkdirSync(dir, { recursive: true, mode: 0o700 });

  const rootKeys = await generateKeyPair(keyType);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [`${o.name} Root CA`] }, { O: [o.name] }],
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + validity),
    keys: rootKeys,
    signingAlgorithm: signingAlgorithm(info),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  const { intermediate, interKeys } = await issueIntermediate({
    name: o.name,
    keyType,
    root,
    rootKey: rootKeys.privateKey,
    notBefore: now,
    notAfter: new Date(now.getTime() + Math.min(validity, validity / 2 + 365 * DAY)),
  });
  const tokenKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;

  const rootPem = root.toString('pem');
  const interPem = intermediate.toString('pem');
  const meta: CaMeta = {
    version: 1,
    name: o.name,
    keyType,
    createdAt: now.toISOString(),
    rootFingerprint: certificateFingerprint(new Uint8Array(root.rawData)),
    intermediateFingerprint: certificateFingerprint(new Uint8Array(intermediate.rawData)),
    rootEncrypted: Boolean(o.passphrase),
  };
  writeNewFile(join(dir, CA_FILES.rootKey), await privateKeyToPem(rootKeys.privateKey, o.passphrase), 0o600);
  writeNewFile(join(dir, CA_FILES.intermediateKey), await privateKeyToPem(interKeys.privateKey), 0o600);
  writeNewFile(join(dir, CA_FILES.tokenKey), tokenKey, 0o600);
  writeNewFile(join(dir, CA_FILES.rootCert), `${rootPem}\n`);
  writeNewFile(join(dir, CA_FILES.intermediateCert), `${interPem}\n`);
  writeNewFile(join(dir, CA_FILES.chain), `${interPem}\n${rootPem}\n`);
  writeNewFile(join(dir, CA_FILES.meta), `${JSON.stringify(meta, null, 2)}\n`);
  return { ...meta, dir };
}

/**
 * A new online intermediate signed by the root (`cert init`, `cert rotate intermediate`). It uses
 * P-256 unless RSA was asked for: it signs at volume (see DESIGN.md).
 */
export async function issueIntermediate(o: {
  name: string;
  keyType: KeyType;
  root: x509.X509Certificate;
  rootKey: CryptoKey;
  notBefore: Date;
  notAfter: Date;
}) {
  const interKeys = await generateKeyPair(o.keyType === 'rsa-3072' ? 'rsa-3072' : 'ec-p256');
  const intermediate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [`${o.name} Intermediate CA`] }, { O: [o.name] }],
    issuer: o.root.subjectName,
    notBefore: new Date(o.notBefore.getTime() - 60_000),
    notAfter: o.notAfter,
    publicKey: interKeys.publicKey,
    signingKey: o.rootKey,
    signingAlgorithm: signingAlgorithm(keyTypeInfo(o.keyType)),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(interKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(await o.root.publicKey.export()),
    ],
  });
  return { intermediate, interKeys };
}

export interface LoadedCa {
  dir: string;
  meta: CaMeta;
  root: x509.X509Certificate;
  rootPem: string;
  intermediate: x509.X509Certificate;
  intermediatePem: string;
  /** Every intermediate a peer may chain through: the current one first, then retired ones. */
  intermediatePems: string[];
  /** Intermediate then root, PEM: what a site needs to build its chain. */
  chainPem: string;
  rootFingerprint: string;
  /** The online issuer (intermediate CA). */
  issuer: Issuer;
  /**
   * The retired intermediates still in the chain whose keys are kept: they sign only their CRLs,
   * so what they issued can still be revoked until it expires.
   */
  retiredIssuers: Issuer[];
}

function readCaFile(dir: string, file: string): string {
  const path = join(dir, file);
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw new PollenError('CA_NOT_FOUND', `No CA in ${dir} (missing ${file})`, { data: { path: dir } });
  }
}

/** Load a CA folder for signing with the intermediate. The root key is never read here. */
export async function loadCa(dirIn: string): Promise<LoadedCa> {
  const dir = resolve(dirIn);
  let meta: CaMeta;
  try {
    meta = JSON.parse(readCaFile(dir, CA_FILES.meta)) as CaMeta;
  } catch (e) {
    if (e instanceof PollenError) throw e;
    throw new PollenError('CA_NOT_FOUND', `${join(dir, CA_FILES.meta)} is not valid JSON`);
  }
  const rootPem = readCaFile(dir, CA_FILES.rootCert).trim();
  const intermediatePem = readCaFile(dir, CA_FILES.intermediateCert).trim();
  const root = new x509.X509Certificate(rootPem);
  const intermediate = new x509.X509Certificate(intermediatePem);
  const key = await importPrivateKeyPem(readCaFile(dir, CA_FILES.intermediateKey));
  // Retired intermediates stay in the chain until they expire: what they signed still verifies.
  const now = Date.now();
  const retiredFiles = (meta.retiredIntermediates ?? [])
    .map((f) => ({ f, pem: readCaFile(dir, f).trim() }))
    .filter(({ pem }) => new x509.X509Certificate(pem).notAfter.getTime() > now);
  const retired = retiredFiles.map(({ pem }) => pem);
  const intermediatePems = [intermediatePem, ...retired];
  const retiredIssuers: Issuer[] = [];
  for (const { f, pem } of retiredFiles) {
    const keyFile = join(dir, f.replace(/\.pem$/, '.key'));
    if (f.endsWith('.pem') && existsSync(keyFile))
      retiredIssuers.push(
        await makeIssuer(new x509.X509Certificate(pem), await importPrivateKeyPem(readFileSync(keyFile))),
      );
  }
  return {
    dir,
    meta,
    root,
    rootPem,
    intermediate,
    intermediatePem,
    intermediatePems,
    chainPem: `${intermediatePems.join('\n')}\n${rootPem}\n`,
    rootFingerprint: certificateFingerprint(new Uint8Array(root.rawData)),
    issuer: await makeIssuer(intermediate, key),
    retiredIssuers,
  };
}

/** Unlock the root key (e.g. to re-issue an intermediate); needs the passphrase if encrypted. */
export async function loadRootKey(dirIn: string, passphrase?: string) {
  return importPrivateKeyPem(readCaFile(resolve(dirIn), CA_FILES.rootKey), passphrase);
}
