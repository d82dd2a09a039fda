/**
 * TLS material and peer identities for the Pollen RPC servers. A participant certificate carries
 * the URI SAN `pollen://PROJECT/TYPE/NAME` (see pki/profiles.ts); that URI, not the CN, is who the
 * peer is.
 */
import { readFileSync } from 'node:fs';
import tls, { type PeerCertificate, type TLSSocket } from 'node:tls';
import { PollenError } from '../errors.js';
import { type CertType, isCertType } from '../pki/vocabulary.js';

export interface TlsMaterial {
  /** Our certificate followed by the intermediate chain (PEM). */
  cert: string;
  /** Our private key (PEM). */
  key: string;
  /** The project's root CA (PEM): the only trust anchor for peers. */
  ca: string;
}

export interface TlsPaths {
  cert: string;
  key: string;
  ca: string;
  /** Intermediate chain appended to our certificate when presenting it. */
  chain?: string;
}

export function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new PollenError('FILE_NOT_FOUND', `Cannot read the ${what} at ${path}`, {
      hint: 'Check the path, or enroll first with `pollen start KIT_DIR`.',
      cause: e,
    });
  }
}

export function loadTlsMaterial(paths: TlsPaths): TlsMaterial {
  const cert = readPem(paths.cert, 'certificate');
  const chain = paths.chain ? readPem(paths.chain, 'certificate chain') : '';
  return {
    cert: chain && !cert.includes(chain.trim()) ? `${cert.trimEnd()}\n${chain}` : cert,
    key: readPem(paths.key, 'private key'),
    ca: readPem(paths.ca, 'root CA certificate'),
  };
}

/**
 * Our chain with the project root appended, for a server that people reach with no kit: they
 * pin the root by its fingerprint and find it in the chain (`pollen login --root-fingerprint`).
 * Clients that already trust the root ignore the extra certificate (RFC 8446 §4.4.2).
 */
export function withRootInChain(m: TlsMaterial): TlsMaterial {
  return m.cert.includes(m.ca.trim()) ? m : { ...m, cert: `${m.cert.trimEnd()}\n${m.ca}` };
}

export interface PeerIdentity {
  project: string;
  type: CertType;
  name: string;
  /** Upper-case hex serial, as Node reports it (for CRL checks). */
  serial: string;
  /** sha256:HEX of the DER certificate. */
  fingerprint: string;
  /** The organisation (`O=`), where the certificate names one. */
  org?: string;
  /** The role (`title`, FLARE's unstructuredName) of an admin certificate, where it names one. */
  role?: string;
}

/** One subject attribute as Node reports it (an array when repeated: then none is believed). */
function subjectField(cert: PeerCertificate, field: string): string | undefined {
  const v = (cert.subject as unknown as Record<string, unknown> | undefined)?.[field];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

const IDENTITY_URI = /^URI:pollen:\/\/([^/\s,]+)\/([a-z]+)\/([^/\s,]+)$/;

/** The Pollen identity in a verified peer certificate, or undefined when it carries none. */
export function identityOf(cert: PeerCertificate | undefined): PeerIdentity | undefined {
  if (!cert?.raw) return undefined;
  for (const san of (cert.subjectaltname ?? '').split(/,\s*/)) {
    const m = IDENTITY_URI.exec(san);
    if (!m) continue;
    const [, project = '', type = '', encoded = ''] = m;
    if (!isCertType(type)) return undefined;
    // The URI percent-encodes the name (admin%40example.com): callers get it as written.
    let name: string;
    try {
      name = decodeURIComponent(encoded);
    } catch {
      return undefined;
    }
    const fingerprint = (cert.fingerprint256 ?? '').replaceAll(':', '').toLowerCase();
    const org = subjectField(cert, 'O');
    const role = subjectField(cert, 'title') ?? subjectField(cert, 'unstructuredName');
    return {
      project,
      type,
      name,
      serial: cert.serialNumber.toUpperCase(),
      fingerprint: `sha256:${fingerprint}`,
      ...(org && { org }),
      ...(role && { role }),
    };
  }
  return undefined;
}

/** The verified identity of the peer on a TLS socket (undefined without a client certificate). */
export function peerIdentity(socket: TLSSocket): PeerIdentity | undefined {
  if (!socket.authorized) return undefined;
  return identityOf(socket.getPeerCertificate());
}

/**
 * `checkServerIdentity` for clients of a SuperLink: the host name as TLS checks it, and a
 * `server` identity, so that no other certificate of the project (a site's, an admin's), which
 * chains to the same root, can stand in for the SuperLink.
 */
export function checkPollenServer(host: string, cert: PeerCertificate): Error | undefined {
  const mismatch = tls.checkServerIdentity(host, cert);
  if (mismatch) return mismatch;
  const id = identityOf(cert);
  if (id?.type !== 'server')
    return new PollenError(
      'PEER_NOT_SERVER',
      `The peer at ${host} is not a Pollen server: its certificate carries ${id ? `a ${id.type} identity` : 'no Pollen identity'}`,
    );
  return undefined;
}
