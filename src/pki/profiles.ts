import { createHash, type KeyObject, randomBytes, sign } from 'node:crypto';
import { isIP } from 'node:net';
import {
  bitString,
  bool,
  children,
  ctx,
  nul,
  octets,
  oid,
  readOne,
  seq,
  set,
  time,
  uint,
  utf8,
} from './der.js';
import { certificateFingerprint } from './fingerprint.js';
import { type KeyInfo, type LoadedPrivateKey, x509 } from './keys.js';
import { assertValidName, isEmail, isHostname, normalizeHosts, projectSlug } from './names.js';
import { type CertType, isCertType } from './vocabulary.js';

export {
  assertValidName,
  assertValidOrg,
  CERT_SERVICE_IDENTITY,
  hostsOfCertificate,
  isCertServiceIdentity,
  isEmail,
  isHostname,
  isOrgName,
  MAX_HOSTS,
  normalizeHosts,
  projectSlug,
} from './names.js';
export { CERT_TYPES, type CertType, isCertType } from './vocabulary.js';

/** FLARE keeps the role in PKCS#9 unstructuredName; we also keep it in the X.520 `title` attribute. */
export const OID_UNSTRUCTURED_NAME = '1.2.840.113549.1.9.2';
export const OID_TITLE = '2.5.4.12';

/** A random, positive 128-bit serial (RFC 5280 allows up to 20 octets). */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x10; // positive and never shortened by a leading zero
  return b.toString('hex');
}

/** A URI identity for every participant: stable, typed, and independent of the host name. */
export function identityUri(project: string, type: CertType | 'service', name: string): string {
  return `pollen://${projectSlug(project)}/${type}/${encodeURIComponent(name)}`;
}

export interface SiteProfile {
  name: string;
  type: CertType;
  project: string;
  org?: string;
  role?: string;
  /** DNS names or IP addresses (servers and relays). */
  hosts?: string[];
  /**
   * A project service (the Certificate Service): its URI identity is pollen://PROJECT/service/NAME,
   * which no participant certificate can carry, so clients can tell it from any server or relay.
   */
  service?: boolean;
}

export interface Issuer {
  cert: x509.X509Certificate;
  key: CryptoKey;
  /** The same private key as a KeyObject, for the fast signing path. */
  keyObject: KeyObject;
  keyInfo: KeyInfo;
  /** Pre-computed once: the AuthorityKeyIdentifier every CRL carries. */
  aki: x509.AuthorityKeyIdentifierExtension;
  /** Pre-computed once: the issuer's DER subject and key id, copied into every certificate. */
  subjectDer: Buffer;
  keyId: Buffer;
}

export interface IssuedCertificate {
  pem: string;
  der: Buffer;
  serial: string;
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
}

export async function makeIssuer(cert: x509.X509Certificate, key: LoadedPrivateKey): Promise<Issuer> {
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId = ski
    ? Buffer.from(ski.keyId, 'hex')
    : createHash('sha1')
        .update(spkiKeyBits(Buffer.from(cert.publicKey.rawData)))
        .digest();
  const tbs = children(readOne(Buffer.from(cert.rawData)))[0]!;
  const subjectDer = children(tbs)[5]!.raw; // version, serial, sigAlg, issuer, validity, subject
  return {
    cert,
    key: key.cryptoKey,
    keyObject: key.keyObject,
    keyInfo: key.info,
    aki: await x509.AuthorityKeyIdentifierExtension.create(cert.publicKey),
    subjectDer: Buffer.from(subjectDer),
    keyId,
  };
}

/** The subjectPublicKey bits of a SubjectPublicKeyInfo (what key identifiers hash). */
function spkiKeyBits(spki: Buffer): Buffer {
  const [, bits] = children(readOne(spki));
  return bits!.content.subarray(1);
}

const OIDS = {
  cn: '2.5.4.3',
  o: '2.5.4.10',
  ou: '2.5.4.11',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

function signatureAlgorithmDer(info: KeyInfo): { der: Buffer; hash: string } {
  if (info.kind === 'rsa') return { der: seq(oid('1.2.840.113549.1.1.11'), nul()), hash: 'sha256' };
  return info.curve === 'P-384'
    ? { der: seq(oid('1.2.840.10045.4.3.3')), hash: 'sha384' }
    : { der: seq(oid('1.2.840.10045.4.3.2')), hash: 'sha256' };
}

function nameDer(p: SiteProfile): Buffer {
  const rdn = (type: string, value: string) => set(seq(oid(type), utf8(value)));
  const rdns = [rdn(OIDS.cn, p.name)];
  if (p.org) rdns.push(rdn(OIDS.o, p.org));
  rdns.push(rdn(OIDS.ou, p.type));
  if (p.role) rdns.push(rdn(OID_TITLE, p.role), rdn(OID_UNSTRUCTURED_NAME, p.role));
  return seq(...rdns);
}

function generalNamesDer(p: SiteProfile): Buffer {
  const names: Buffer[] = [];
  for (const san of subjectAltNames(p)) {
    if (san.type === 'dns') names.push(ctx(2, false, Buffer.from(san.value, 'ascii')));
    else if (san.type === 'ip') names.push(ctx(7, false, ipBytes(san.value)));
    else if (san.type === 'email') names.push(ctx(1, false, Buffer.from(san.value, 'ascii')));
    else names.push(ctx(6, false, Buffer.from(san.value, 'ascii')));
  }
  return seq(...names);
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = ip.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

type San = { type: 'dns' | 'ip' | 'email' | 'url'; value: string };

function subjectAltNames(p: SiteProfile): San[] {
  const sans: San[] = [];
  for (const h of normalizeHosts(p.hosts ?? [])) {
    if (isIP(h)) sans.push({ type: 'ip', value: h });
    else sans.push({ type: 'dns', value: h });
  }
  if (p.type === 'server' && sans.length === 0 && isHostname(p.name))
    sans.push({ type: 'dns', value: p.name });
  if (p.type === 'admin' && isEmail(p.name)) sans.push({ type: 'email', value: p.name });
  sans.push({ type: 'url', value: identityUri(p.project, p.service ? 'service' : p.type, p.name) });
  return sans;
}

const ext = (id: string, critical: boolean, value: Buffer) =>
  critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));

/**
 * Build and sign an end-entity certificate from authoritative data only: the subject key comes
 * from the CSR, everything else (name, type, role, usages) from the caller.
 */
export function issueSiteCertificate(
  issuer: Issuer,
  spki: Buffer,
  subjectKeyInfo: KeyInfo,
  profile: SiteProfile,
  validityMs: number,
  now = new Date(),
): IssuedCertificate {
  assertValidName(profile.name); // whatever the caller checked: a name never carries a separator
  const rsa = subjectKeyInfo.kind === 'rsa';
  // KeyUsage bits: digitalSignature (bit 0) and, for RSA, keyEncipherment (bit 2).
  const keyUsage = rsa ? bitString(Buffer.from([0xa0]), 5) : bitString(Buffer.from([0x80]), 7);
  const eku =
    profile.type === 'server'
      ? [OIDS.serverAuth]
      : profile.type === 'relay'
        ? [OIDS.clientAuth, OIDS.serverAuth]
        : [OIDS.clientAuth];
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - 60_000); // tolerate clock skew
  const notAfter = new Date(Math.floor((now.getTime() + validityMs) / 1000) * 1000);
  if (notAfter > issuer.cert.notAfter) notAfter.setTime(issuer.cert.notAfter.getTime());
  const serial = randomSerial();
  const alg = signatureAlgorithmDer(issuer.keyInfo);
  const ski = createHash('sha1').update(spkiKeyBits(spki)).digest();
  const tbs = seq(
    ctx(0, true, uint(2)),
    uint(serial),
    alg.der,
    issuer.subjectDer,
    seq(time(notBefore), time(notAfter)),
    nameDer(profile),
    spki,
    ctx(
      3,
      true,
      seq(
        ext(OIDS.basicConstraints, true, seq()),
        ext(OIDS.keyUsage, true, keyUsage),
        ext(OIDS.extKeyUsage, false, seq(...eku.map(oid))),
        ext(OIDS.subjectAltName, false, generalNamesDer(profile)),
        ext(OIDS.subjectKeyId, false, octets(ski)),
        ext(OIDS.authorityKeyId, false, seq(ctx(0, false, issuer.keyId))),
      ),
    ),
  );
  const signature = sign(alg.hash, tbs, { key: issuer.keyObject, dsaEncoding: 'der' });
  const der = seq(tbs, alg.der, bitString(signature));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return {
    pem: `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`,
    der,
    serial,
    fingerprint: certificateFingerprint(der),
    notBefore,
    notAfter,
  };
}

/** Read the profile back out of a certificate we issued (name, type, role, org). */
export function readProfile(cert: x509.X509Certificate): {
  name: string;
  type?: CertType;
  role?: string;
  org?: string;
} {
  const n = cert.subjectName;
  const type = n.getField('OU')[0];
  return {
    name: n.getField('CN')[0] ?? '',
    type: type && isCertType(type) ? type : undefined,
    role: n.getField(OID_TITLE)[0] ?? n.getField(OID_UNSTRUCTURED_NAME)[0],
    org: n.getField('O')[0],
  };
}

/** Renew at about two thirds of the lifetime. */
export function renewalTime(notBefore: Date, notAfter: Date): Date {
  return new Date(notBefore.getTime() + ((notAfter.getTime() - notBefore.getTime()) * 2) / 3);
}
