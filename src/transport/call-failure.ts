/**
 * What a failed call to a Pollen RPC API means to the one who made it: the server's own refusal
 * (its code kept), or, for a failure on the way, the closest precise code — the server's
 * certificate refused by us (TLS_FAILED), ours refused by the server (CERT_NOT_ACCEPTED), an
 * address that is not the API (WRONG_ENDPOINT), or a server that is away (UNAVAILABLE, which a
 * client retries). Used by the SuperNode to tell a refusal from an outage, and by the admin CLI.
 */
import { Code, ConnectError } from '@connectrpc/connect';
import { PollenError } from '../errors.js';
import { ERROR_CODE_HEADER, fromConnectError } from './errors.js';
import { nodeErrorCode, tlsError, tlsFailure } from './tls-failure.js';
import { type ProbeTarget, probeTls } from './tls-probe.js';

export interface Endpoint {
  /** The API as a user knows it: "the SuperLink's Fleet API". */
  api: string;
  /** https://HOST:PORT (or http:// on loopback). */
  url: string;
  /** The client's TLS material (a TLS failure the call did not show is then probed for). */
  tls?: ProbeTarget['tls'];
  /** What to do when the server's certificate is refused, when ours is, and when the address is wrong. */
  hints: { serverCert: string; ourCert: string; address: string };
}

/** The address is plainly unreachable: nothing a TLS probe could add. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
/** How a connection that broke without an answer surfaces in Connect. */
const BROKEN = new Set([Code.Internal, Code.Unavailable, Code.Canceled, Code.Aborted, Code.Unknown]);

/** The PollenError a failed call to `ep` stands for (see the top of this file). */
export async function explainCallFailure(e: unknown, ep: Endpoint): Promise<PollenError> {
  // Read again from the Connect error a PollenError was made of on this side (`rpc`, `call`).
  const ce = e instanceof PollenError ? e.cause : e;
  if (!(ce instanceof ConnectError)) return e instanceof PollenError ? e : fromConnectError(e);
  if (ce.metadata.get(ERROR_CODE_HEADER) !== null) return fromConnectError(ce);
  const tls = tlsFailure(ce, tlsPeer(ep));
  if (tls) return tls;
  if (ce.code === Code.Unimplemented)
    return new PollenError('WRONG_ENDPOINT', `${ep.url} answers, but does not serve ${ep.api}`, {
      cause: ce,
      hint: ep.hints.address,
    });
  const plain = fromConnectError(ce);
  if (plain.code !== 'UNAVAILABLE' && plain.code !== 'INTERNAL') return plain;
  if (ep.tls && BROKEN.has(ce.code) && !UNREACHABLE.has(nodeErrorCode(ce) ?? '')) {
    const found = await probedRefusal(ep, ep.tls);
    if (found) return found;
  }
  // Nothing refused us: the server is away or the connection broke, which passes.
  return new PollenError('UNAVAILABLE', `Cannot reach ${ep.api} at ${ep.url} (${plain.message})`, {
    cause: ce,
  });
}

/**
 * What a TLS probe of `ep` finds (tls-probe.ts): its TLS failure, or a refusal of our certificate
 * when the server closes right after the handshake. A server stopping at that moment would look
 * the same, so that takes two connections in a row; anything else is no refusal.
 */
async function probedRefusal(
  ep: Endpoint,
  tls: NonNullable<Endpoint['tls']>,
): Promise<PollenError | undefined> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const probed = await probeTls({ url: ep.url, tls });
    if (probed.kind === 'failed')
      return probed.error instanceof PollenError ? probed.error : tlsFailure(probed.error, tlsPeer(ep));
    if (probed.kind !== 'closed-after-handshake') return undefined;
  }
  return tlsError('refused', 'the connection closed right after the handshake', tlsPeer(ep));
}

function tlsPeer(ep: Endpoint) {
  return {
    peer: `${ep.api} at ${ep.url}`,
    trusted: 'the root CA you trust',
    hint: ep.hints.serverCert,
    refusedHint: ep.hints.ourCert,
    protocolHint: ep.hints.address,
  };
}
