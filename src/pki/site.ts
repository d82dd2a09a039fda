import { webcrypto } from 'node:crypto';
import { appendFileSync, copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PollenError } from '../errors.js';
import { writeFileAtomic, writeSecretFile } from '../util/files.js';
import type { LoadedCa } from './ca.js';
import { createCrls, type RevokedEntry } from './crl.js';
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

export interface IssuedRecord {
  serial: string;
  name: string;
  type: string;
  role: string | null;
  fingerprint: string;
  notAfter: string;
  issuedAt: string;
  revokedAt?: string;
  reason?: string;
}

/** Certificates `cert site` issued from this CA folder, with their revocations applied. */
export function readIssued(caDir: string): IssuedRecord[] {
  const path = join(resolve(caDir), 'issued.jsonl');
  if (!existsSync(path)) return [];
  const bySerial = new Map<string, IssuedRecord>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as IssuedRecord & { event?: 'revoke' };
    if (r.event === 'revoke') {
      const prev = bySerial.get(r.serial);
      if (prev) Object.assign(prev, { revokedAt: r.revokedAt, reason: r.reason });
    } else bySerial.set(r.serial, r);
  }
  return [...bySerial.values()];
}

/**
 * Manual workflow revocation: mark certificates revoked in issued.jsonl (append-only) and write a
 * fresh CRL, one per intermediate in the chain (writeLocalCrl), to CA_DIR/crl.pem.
 */
export async function revokeLocal(
  ca: LoadedCa,
  sel: { names?: string[]; serials?: string[]; reason?: RevokedEntry['reason'] },
  now = new Date(),
): Promise<{ revoked: IssuedRecord[]; crlPath: string }> {
  const wanted = new Set((sel.serials ?? []).map((s) => s.toLowerCase().replaceAll(':', '')));
  const names = new Set(sel.names ?? []);
  const issued = readIssued(ca.dir);
  const chosen = issued.filter((r) => !r.revokedAt && (wanted.has(r.serial) || names.has(r.name)));
  if (chosen.length === 0)
    throw new PollenError('NOT_ENROLLED', 'No unrevoked certificate from this CA matches', {
      hint: 'List what this CA issued with `pollen cert list -c DIR`.',
    });
  for (const r of chosen) {
    r.revokedAt = now.toISOString();
    r.reason = sel.reason ?? 'unspecified';
    appendFileSync(
      join(ca.dir, 'issued.jsonl'),
      `${JSON.stringify({ event: 'revoke', serial: r.serial, revokedAt: r.revokedAt, reason: r.reason })}\n`,
    );
  }
  return { revoked: chosen, crlPath: await writeLocalCrl(ca, now) };
}

/** Write CA_DIR/crl.pem (one CRL per intermediate: createCrls) listing every revoked, unexpired certificate of issued.jsonl. */
export async function writeLocalCrl(ca: LoadedCa, now = new Date(), lifetimeDays = 7): Promise<string> {
  const entries = readIssued(ca.dir)
    .filter((r) => r.revokedAt && Date.parse(r.notAfter) > now.getTime())
    .map((r) => ({
      serial: r.serial,
      revokedAt: new Date(r.revokedAt!),
      reason: r.reason as RevokedEntry['reason'],
    }));
  const crlPath = join(ca.dir, 'crl.pem');
  writeFileAtomic(
    crlPath,
    await createCrls([ca.issuer, ...ca.retiredIssuers], entries, now, lifetimeDays * 86_400_000),
  );
  return crlPath;
}
