/**
 * The one reading of TLS failures, for every client of a Pollen server (the RPC APIs and the
 * Certificate Service): the Node/OpenSSL error code of a failed connection says whether our side
 * refused the server's certificate (chain, host name), the server refused ours (its TLS alert),
 * the address speaks no TLS at all, or the handshake failed otherwise.
 */
import { PollenError } from '../errors.js';

export type TlsFailureKind =
  /** The server's certificate does not chain to the root we trust. */
  | 'chain'
  /** The server's certificate is not valid for the host name we dialled. */
  | 'hostname'
  /** The server refused our certificate (its alert, or a close right after the handshake). */
  | 'refused'
  /** The address answered, but not in the protocol asked for (no TLS, or TLS without HTTP/2). */
  | 'protocol'
  /** Any other handshake failure (no common version or cipher, a broken peer). */
  | 'handshake';

const CHAIN = /^(UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|CERT_)/;
const REFUSED =
  /ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_REQUIRED|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|CERTIFICATE_REVOKED|CERTIFICATE_EXPIRED|ACCESS_DENIED|DECRYPT_ERROR)$/;
const PROTOCOL =
  /(WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|HTTP_REQUEST|UNKNOWN_PROTOCOL|RECORD_LAYER_FAILURE|ALERT_NO_APPLICATION_PROTOCOL)$/;
const TLS = /^(ERR_TLS|ERR_SSL|EPROTO$)/;

/** What kind of TLS failure a Node error code names; undefined when it is no TLS failure. */
export function tlsFailureKind(code: string): TlsFailureKind | undefined {
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') return 'hostname';
  if (CHAIN.test(code)) return 'chain';
  if (REFUSED.test(code)) return 'refused';
  if (PROTOCOL.test(code)) return 'protocol';
  if (TLS.test(code)) return 'handshake';
  return undefined;
}

/**
 * The Node error codes on an error and its causes, outermost first (undici and Connect wrap
 * socket errors). A PollenError's code is none: CERT_REVOKED is no OpenSSL verdict.
 */
function nodeErrorCodes(e: unknown): string[] {
  const codes: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 8 && cur; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && !(cur instanceof PollenError)) codes.push(code);
    cur = (cur as { cause?: unknown }).cause;
  }
  return codes;
}

/** The first Node error code on an error or its causes. */
export const nodeErrorCode = (e: unknown): string | undefined => nodeErrorCodes(e)[0];

export interface TlsPeer {
  /** Who we tried to reach, for the message: "the SuperLink at https://…". */
  peer: string;
  /** What the server's certificate was checked against: "the project root CA". */
  trusted?: string;
  /** What to do when our side refused the server's certificate (chain, host name, handshake). */
  hint?: string;
  /** What to do when the server refused our certificate. */
  refusedHint?: string;
  /** What to do when the address speaks another protocol. */
  protocolHint?: string;
}

/**
 * The PollenError for a TLS failure anywhere on `e` or its causes (TLS_FAILED, CERT_NOT_ACCEPTED,
 * WRONG_ENDPOINT), or undefined when `e` is no TLS failure.
 */
export function tlsFailure(e: unknown, o: TlsPeer): PollenError | undefined {
  for (const code of nodeErrorCodes(e)) {
    const kind = tlsFailureKind(code);
    if (kind) return tlsError(kind, code, o, e);
  }
  return undefined;
}

/** The PollenError for a TLS failure of `kind` (`code`: the Node error code, or what was seen). */
export function tlsError(kind: TlsFailureKind, code: string, o: TlsPeer, cause?: unknown): PollenError {
  const Peer = o.peer[0]!.toUpperCase() + o.peer.slice(1);
  const base = { cause, detail: code };
  if (kind === 'refused')
    return new PollenError(
      'CERT_NOT_ACCEPTED',
      `${Peer} refused this certificate at the TLS handshake (${code}): it does not trust its CA`,
      { ...base, ...(o.refusedHint !== undefined && { hint: o.refusedHint }) },
    );
  if (kind === 'protocol')
    return new PollenError('WRONG_ENDPOINT', `${Peer} answers in another protocol (${code})`, {
      ...base,
      ...(o.protocolHint !== undefined && { hint: o.protocolHint }),
    });
  const why =
    kind === 'hostname'
      ? 'its certificate is not valid for this host name'
      : kind === 'chain'
        ? `its certificate does not chain to ${o.trusted ?? 'the root CA it is checked against'}`
        : 'the TLS handshake failed';
  return new PollenError('TLS_FAILED', `TLS to ${o.peer} failed (${code}): ${why}`, {
    ...base,
    ...(o.hint !== undefined && { hint: o.hint }),
  });
}
