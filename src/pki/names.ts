/**
 * The names a certificate holds (site and user names, organisations, hosts, the project's slug)
 * and their checks, apart from the code that builds certificates: the CLI, kits and policies check
 * names without loading the x509 library (profiles.ts re-exports them).
 */
import { isIP } from 'node:net';
import { PollenError } from '../errors.js';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
const HOST_RE =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Site and user names become file names, DNs and URIs: keep them to a safe alphabet. */
export function assertValidName(name: string): void {
  if (!NAME_RE.test(name) || name.includes('..'))
    throw new PollenError('INVALID_ARGUMENT', `Invalid name '${name}'`, {
      hint: 'Names use letters, digits and . _ @ + - (at most 128 characters), starting with a letter or digit.',
    });
}

const ORG_RE = /^[A-Za-z0-9][A-Za-z0-9 ._@&+-]{0,63}$/;

/** Whether an organisation name fits a certificate's `O=` (at most 64 characters, a safe alphabet). */
export function isOrgName(v: string): boolean {
  return ORG_RE.test(v) && !v.endsWith(' ');
}

/** An organisation becomes the certificate's `O=` and a scope of rights: keep it plain. */
export function assertValidOrg(org: string): void {
  if (!isOrgName(org))
    throw new PollenError('INVALID_ARGUMENT', `Invalid organisation '${org}'`, {
      hint: 'Organisations use letters, digits, spaces and . _ @ & + - (at most 64 characters), starting with a letter or digit.',
    });
}

export function isHostname(v: string): boolean {
  return HOST_RE.test(v);
}

export function isEmail(v: string): boolean {
  return EMAIL_RE.test(v);
}

/** The project as identities spell it: "Pollen Demo" → "pollen-demo". */
export function projectSlug(project: string): string {
  return project.toLowerCase().replace(/[^a-z0-9.-]+/g, '-') || 'project';
}

/** At most this many DNS names and addresses in one certificate. */
export const MAX_HOSTS = 32;

/**
 * The DNS names and IP addresses a server or relay is reached at, checked and in one spelling:
 * DNS names lower-case (`*.example.com` allowed), each once. INVALID_ARGUMENT names a bad one.
 */
export function normalizeHosts(hosts: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of hosts) {
    const h = isIP(raw) ? raw : raw.toLowerCase();
    if (!isIP(h) && !isHostname(h) && !/^\*\.[^*]+$/.test(h))
      throw new PollenError('INVALID_ARGUMENT', `--host '${raw}' is neither a DNS name nor an IP address`, {
        hint: 'Give a DNS name (superlink.example.com, localhost) or an IP address (10.0.0.5), once per --host.',
      });
    if (!out.includes(h)) out.push(h);
  }
  if (out.length > MAX_HOSTS)
    throw new PollenError('INVALID_ARGUMENT', `At most ${MAX_HOSTS} --host names fit one certificate`);
  return out;
}

/** The DNS names and IP addresses a certificate's subjectAltName holds (what TLS clients check). */
export function hostsOfCertificate(cert: { subjectAltName?: string | undefined }): string[] {
  return (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .flatMap((san) => /^(?:DNS:|IP Address:)(.+)$/.exec(san)?.slice(1) ?? []);
}

/** The URI SAN path of the Certificate Service's own certificate. */
export const CERT_SERVICE_IDENTITY = '/service/cert-service';

/**
 * Whether a peer certificate's subjectAltName (Node's `cert.subjectaltname` text) names the
 * project's Certificate Service rather than some participant that holds a server certificate.
 */
export function isCertServiceIdentity(subjectaltname: string | undefined): boolean {
  return (subjectaltname ?? '')
    .split(/,\s*/)
    .some((san) => /^URI:pollen:\/\/[^/]+\/service\/cert-service$/.test(san));
}
