import { webcrypto } from 'node:crypto';
import { appendFileSync, copyFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PollenError } from '../errors.js';
import { writeFileAtomic, writeSecretFile } from '../util/files.js';
import type { LoadedCa } from './ca.js';
import { generateKeyPair, type KeyType, keyTypeInfo, privateKeyToPem } from './keys.js';
import {
  assertValidName,
  type IssuedCertificate,
  issueSiteCertificate,
  type SiteProfile,
} from './profiles.js';

export interface SiteCertOptions extends Omit<SiteProfile, 'project'> {
  outDir: string;
  validityDays: number;
  keyType?: KeyType;
  force?: boolean;
}

export interface SiteCertResult extends Omit<IssuedCertificate, 'der'> {
  name: string;
  type: SiteProfile['type'];
  certPath: string;
  keyPath: string;
  rootPath: string;
}

/**
 * Manual workflow: make a key and a certificate for one participant, signed by the CA's
 * intermediate. Writes NAME.crt (leaf then intermediate, so TLS peers get the chain),
 * NAME.key (0600) and rootCA.pem, and records the issuance in the CA folder's issued.jsonl.
 */
export async function createSiteCertificate(ca: LoadedCa, o: SiteCertOptions): Promise<SiteCertResult> {
  assertValidName(o.name);
  const out = resolve(o.outDir);
  const certPath = join(out, `${o.name}.crt`);
  const keyPath = join(out, `${o.name}.key`);
  const rootPath = join(out, 'rootCA.pem');
  if (!o.force && (existsSync(certPath) || existsSync(keyPath)))
    throw new PollenError('FILE_EXISTS', `${o.name}.crt or ${o.name}.key already exists in ${out}`, {
      hint: 'Choose another output folder with -o, or pass --force to replace them.',
    });
  const keyType = o.keyType ?? 'ec-p256';
  const keys = await generateKeyPair(keyType);
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
  const issued = issueSiteCertificate(
    ca.issuer,
    spki,
    keyTypeInfo(keyType),
    { name: o.name, type: o.type, project: ca.meta.name, org: o.org, role: o.role, hosts: o.hosts },
    o.validityDays * 86_400_000,
  );
  writeSecretFile(keyPath, await privateKeyToPem(keys.privateKey));
  writeFileAtomic(certPath, `${issued.pem}${ca.intermediatePem}\n`);
  copyFileSync(join(ca.dir, 'rootCA.pem'), rootPath);
  appendFileSync(
    join(ca.dir, 'issued.jsonl'),
    `${JSON.stringify({ serial: issued.serial, name: o.name, type: o.type, role: o.role ?? null, fingerprint: issued.fingerprint, notAfter: issued.notAfter.toISOString(), issuedAt: new Date().toISOString() })}\n`,
  );
  const { der: _der, ...rest } = issued;
  return { ...rest, name: o.name, type: o.type, certPath, keyPath, rootPath };
}
