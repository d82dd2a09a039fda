/**
 * A second look at a connection that failed without a word from the server. A Node server that
 * refuses a client certificate (another CA) lets the TLS 1.3 handshake finish from the client's
 * side, then closes the connection without a byte, or (OpenSSL's own refusals, e.g. no
 * certificate) sends an alert after it; an HTTP/2 call sees only a reset or a closed stream,
 * depending on timing. A connection of its own, which waits for the server's first bytes (its
 * HTTP/2 settings), sees which: the client classifies the refusal, and the server never explains
 * itself to a peer it did not admit.
 */
import tls from 'node:tls';
import { checkPollenServer } from './tls.js';

export interface ProbeTarget {
  /** https://HOST:PORT */
  url: string;
  tls: { ca: string; cert?: string; key?: string; servername?: string };
  /** Give up after this long (default 5 s): the answer is then "unknown". */
  timeoutMs?: number;
}

export type ProbeResult =
  /** The server spoke (its HTTP/2 settings): TLS is not the problem. */
  | { kind: 'spoke' }
  /** The connection failed: a TLS error (our verdict on the server, its alert) or a socket error. */
  | { kind: 'failed'; error: Error }
  /** The handshake finished, then the server closed without a byte: it refused our certificate. */
  | { kind: 'closed-after-handshake' }
  /** Closed before the handshake finished, or no answer in time. */
  | { kind: 'unknown' };

/** Open one connection as the RPC client does (same material, same server check, HTTP/2). */
export function probeTls(target: ProbeTarget): Promise<ProbeResult> {
  const u = new URL(target.url);
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: Number(u.port || 443),
      ca: target.tls.ca,
      cert: target.tls.cert,
      key: target.tls.key,
      ...(target.tls.servername !== undefined && { servername: target.tls.servername }),
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      checkServerIdentity: checkPollenServer,
    });
    let handshook = false;
    const done = (r: ProbeResult): void => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on('error', () => {});
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ kind: 'unknown' }), target.timeoutMs ?? 5_000);
    socket.once('secureConnect', () => {
      handshook = true;
    });
    socket.once('data', () => done({ kind: 'spoke' }));
    socket.once('error', (error) => done({ kind: 'failed', error }));
    socket.once('close', () => done({ kind: handshook ? 'closed-after-handshake' : 'unknown' }));
  });
}
