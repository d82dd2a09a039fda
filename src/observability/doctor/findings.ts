/**
 * The checks of `pollen doctor`, each a function from what was observed (a certificate, a CRL, a
 * server's Date, a probe's outcome) to a finding that says what to do. Pure: the probes that
 * observe live in probes.ts, so each failure path is testable without a network or a clock.
 */
import { X509Certificate } from 'node:crypto';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { serialKey } from '../../pki/crl.js';
import type { x509 } from '../../pki/keys.js';
import { chainsToRoot, parseCertificates } from '../../pki/verify.js';

export type FindingStatus = 'ok' | 'warn' | 'fail';

export interface Finding {
  /** Stable, dotted: certificate.expiry, clock.skew, port.fleet, … */
  id: string;
  status: FindingStatus;
  message: string;
  /** What to do (absent on ok). */
  fix?: string;
}

const DAY_MS = 86_400_000;
/** Warn this long before a certificate expires: the alert rules' threshold too. */
export const EXPIRY_WARN_DAYS = 7;
/** Node request signatures and token times tolerate small skews; past these, calls fail. */
export const SKEW_WARN_MS = 5_000;
export const SKEW_FAIL_MS = 60_000;
/** Free space under which a store will soon refuse writes. */
export const DISK_WARN_BYTES = 1 << 30;
export const DISK_FAIL_BYTES = 100 << 20;

const ok = (id: string, message: string): Finding => ({ id, status: 'ok', message });
const bad = (id: string, status: 'warn' | 'fail', message: string, fix: string): Finding => ({
  id,
  status,
  message,
  fix,
});

/** `what`'s chain to the project root (the intermediate from `chainPem` or the certificate file). */
export function chainFinding(
  id: string,
  what: string,
  certPem: string,
  chainPem: string,
  rootPem: string,
  now: Date,
): Finding {
  const [leaf, ...rest] = parseCertificates(certPem);
  if (!leaf)
    return bad(
      id,
      'fail',
      `${what} holds no certificate`,
      'Enroll again (pollen start KIT --enroll-only) or ask for a new kit.',
    );
  const result = chainsToRoot(
    leaf,
    [...rest, ...parseCertificates(chainPem)],
    new X509Certificate(rootPem),
    now,
  );
  return result.ok
    ? ok(id, `${what} chains to the project root CA (${result.path.length} certificates)`)
    : bad(
        id,
        'fail',
        `${what} does not verify: ${result.reason}`,
        'Check that the kit and the server belong to the same project; enroll again if the CA was replaced.',
      );
}

/** Expiry: fail when expired or not yet valid, warn within EXPIRY_WARN_DAYS. */
export function expiryFinding(id: string, what: string, cert: X509Certificate, now: Date): Finding {
  const from = new Date(cert.validFrom);
  const to = new Date(cert.validTo);
  if (now < from)
    return bad(
      id,
      'fail',
      `${what} is not valid before ${from.toISOString()}`,
      "Check this host's clock (timedatectl; NTP) — a certificate just issued is valid from its issue time.",
    );
  if (now >= to)
    return bad(
      id,
      'fail',
      `${what} expired on ${to.toISOString()}`,
      'Renew it: a site renews on start (pollen start KIT); an expired site certificate needs a new enrollment token.',
    );
  const days = Math.floor((to.getTime() - now.getTime()) / DAY_MS);
  if (days < EXPIRY_WARN_DAYS)
    return bad(
      id,
      'warn',
      `${what} expires in ${days} days (${to.toISOString()})`,
      'Renew it now: restart the site (pollen start renews from two thirds of the validity) or issue a new certificate.',
    );
  return ok(id, `${what} is valid until ${to.toISOString()} (${days} days)`);
}

/**
 * Whether a certificate's serial is on its issuer's (already signature-checked) CRL: `missing`
 * when the list holds none of that issuer, an Error when the list could not be had.
 */
export function revocationFinding(
  id: string,
  what: string,
  cert: X509Certificate,
  crl: x509.X509Crl | Error | 'missing',
  now: Date,
): Finding {
  if (crl instanceof Error)
    return bad(
      id,
      'warn',
      `The revocation list could not be read: ${crl.message}`,
      'Check that the Certificate Service is reachable from this host (GET /v1/crl).',
    );
  if (crl === 'missing')
    return bad(
      id,
      'warn',
      `The revocation list holds no CRL of the intermediate that issued ${what} (${cert.issuer.replace(/\n/g, ', ')}): whether it is revoked cannot be checked`,
      "The Certificate Service signs a CRL for each intermediate in its chain whose key its CA folder holds: keep a retired intermediate's key (intermediateCA-FINGERPRINT.key) there until it expires, or renew this certificate under the current intermediate.",
    );
  const serial = serialKey(cert.serialNumber);
  if (crl.entries.some((e) => serialKey(e.serialNumber) === serial))
    return bad(
      id,
      'fail',
      `${what} (serial ${serial}) is revoked`,
      'A revoked certificate is refused everywhere: ask the project admin for a new enrollment token and enroll again.',
    );
  const next = crl.nextUpdate;
  if (next && next < now)
    return bad(
      id,
      'warn',
      `${what} is not revoked, but the revocation list is stale (next update ${next.toISOString()})`,
      'Check that the Certificate Service publishes its CRL (pollen cert crl).',
    );
  return ok(id, `${what} is not revoked (CRL of ${crl.thisUpdate.toISOString()})`);
}

/** The server's certificate names the host it was reached at. */
export function serverNameFinding(id: string, host: string, peer: PeerCertificate): Finding {
  const error = checkServerIdentity(host, peer);
  return error
    ? bad(
        id,
        'fail',
        `The server's certificate does not name ${host}: ${error.message}`,
        "Connect by a name the certificate lists (its DNS/IP SANs), or issue the server a certificate for this name (the token's hosts).",
      )
    : ok(id, `The server's certificate names ${host}`);
}

/** Clock skew against a server's `Date` (1 s resolution: smaller skews read as up to 1 s). */
export function clockFinding(id: string, server: string, serverDate: Date, localNow: Date): Finding {
  const skew = localNow.getTime() - serverDate.getTime();
  const text = `${Math.abs(skew / 1000).toFixed(0)} s ${skew >= 0 ? 'ahead of' : 'behind'} ${server}`;
  if (Math.abs(skew) >= SKEW_FAIL_MS)
    return bad(
      id,
      'fail',
      `This host's clock is ${text}`,
      'Synchronise the clock (timedatectl set-ntp true, chrony): tokens, certificates and signed node requests are refused at this skew.',
    );
  if (Math.abs(skew) >= SKEW_WARN_MS)
    return bad(
      id,
      'warn',
      `This host's clock is ${text}`,
      'Synchronise the clock with NTP before the skew grows.',
    );
  return ok(id, `Clock within ${SKEW_WARN_MS / 1000} s of ${server}`);
}

/** A TCP connection to `address` (the error of the attempt, or null). */
export function portFinding(id: string, what: string, address: string, error: Error | null): Finding {
  return error
    ? bad(
        id,
        'fail',
        `${what} at ${address} is not reachable: ${error.message}`,
        `Check that it runs and listens on ${address}, and that firewalls between here and there let the port through (docs/network.md).`,
      )
    : ok(id, `${what} at ${address} is reachable`);
}

/** The outcome of writing and removing a file in `dir`. */
export function writableFinding(id: string, dir: string, error: Error | null): Finding {
  return error
    ? bad(
        id,
        'fail',
        `${dir} is not writable: ${error.message}`,
        `Give the user that runs Pollen write access (chown/chmod ${dir}), or point the component at a writable folder.`,
      )
    : ok(id, `${dir} is writable`);
}

/** Free space where the component keeps its state. */
export function diskFinding(id: string, dir: string, freeBytes: number): Finding {
  const gib = (freeBytes / (1 << 30)).toFixed(1);
  const fix = `Free space under ${dir} (old run artefacts, logs) or move the state to a larger disk.`;
  if (freeBytes < DISK_FAIL_BYTES) return bad(id, 'fail', `Only ${gib} GiB free under ${dir}`, fix);
  if (freeBytes < DISK_WARN_BYTES) return bad(id, 'warn', `Only ${gib} GiB free under ${dir}`, fix);
  return ok(id, `${gib} GiB free under ${dir}`);
}

/** Whether any finding failed (the command's exit code). */
export const anyFailed = (findings: readonly Finding[]): boolean => findings.some((f) => f.status === 'fail');
