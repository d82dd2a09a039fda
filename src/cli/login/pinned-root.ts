/**
 * Trust in a SuperLink for a person with no kit: the root fingerprint the project admin gave them
 * (`sha256:…`, as kits pin it). The SuperLink's Control API sends its whole chain, root included;
 * the root is taken only if a certificate of that chain has the fingerprint and the chain the
 * server presents verifies to it (a second connection that trusts nothing else). The first
 * certificate seen is never trusted for being there.
 */
import type { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { PollenError } from '../../errors.js';
import { certificateFingerprint, normaliseFingerprint } from '../../pki/fingerprint.js';
import { presentedChain } from '../../transport/presented-chain.js';
import { checkPollenServer } from '../../transport/tls.js';

export interface PinnedRoot {
  /** The root, PEM. */
  pem: string;
  fingerprint: string;
  subject: string;
}

/** Fetch the root of the server at HOST:PORT that has `fingerprint`, or refuse. */
export async function fetchPinnedRoot(address: string, fingerprint: string): Promise<PinnedRoot> {
  const pin = normaliseFingerprint(fingerprint);
  if (!pin)
    throw new PollenError(
      'INVALID_ARGUMENT',
      `--root-fingerprint ${fingerprint} is not a SHA-256 fingerprint`,
      {
        hint: 'Give it as sha256:HEX (64 hex digits), or as openssl prints it (AB:CD:…).',
      },
    );
  const { host, port } = hostPort(address);
  const chain = await sentChain(host, port);
  const match = chain.find((c) => certificateFingerprint(c) === pin);
  if (!match)
    throw new PollenError(
      'ROOT_FINGERPRINT_MISMATCH',
      `No certificate sent by ${address} has the fingerprint ${pin}`,
      { data: { address, expected: pin, presented: chain.map((c) => certificateFingerprint(c)) } },
    );
  if (!match.ca || !match.checkIssued(match))
    throw new PollenError(
      'ROOT_FINGERPRINT_MISMATCH',
      `The certificate of ${address} with fingerprint ${pin} is not a root CA (${match.subject.replaceAll('\n', ', ')})`,
      {
        hint: "Give the fingerprint of the project's root CA (rootCA.pem), not of the server's certificate.",
      },
    );
  await verifiesTo(host, port, match.toString());
  return { pem: match.toString(), fingerprint: pin, subject: match.subject.replaceAll('\n', ', ') };
}

function hostPort(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(address);
  if (!m)
    throw new PollenError('INVALID_ARGUMENT', `--address ${address} is not HOST:PORT`, {
      hint: "Give the SuperLink's Control API, e.g. superlink.example.org:9093.",
    });
  return { host: m[1]!, port: Number(m[2]) };
}

/** The certificates the server sends, leaf first (nothing is trusted on this connection). */
function sentChain(host: string, port: number): Promise<X509Certificate[]> {
  return presentedChain(host, port, { timeoutMs: 10_000, alpn: 'h2' }).catch((e) => {
    throw new PollenError('UNAVAILABLE', `Cannot reach ${host}:${port} over TLS`, {
      hint: "Check the SuperLink's Control API address (port 9093 by default) and that it runs.",
      detail: String(e),
      cause: e,
    });
  });
}

/** The server's chain verifies to `root` alone, with a Pollen server identity for `host`. */
function verifiesTo(host: string, port: number, root: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      ca: root,
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      checkServerIdentity: checkPollenServer,
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error('no TLS answer in 10 s')));
    socket.once('secureConnect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', (e) =>
      reject(
        new PollenError(
          'TLS_FAILED',
          `The certificate of ${host}:${port} does not verify to the pinned root`,
          {
            hint: 'The server sent the root you pinned but its own certificate does not chain to it (or is not a Pollen server certificate): tell the project admin.',
            detail: String(e),
            cause: e,
          },
        ),
      ),
    );
  });
}
