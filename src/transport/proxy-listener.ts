/**
 * A TCP listener in front of a TLS server for deployments behind a TCP proxy (nginx `stream` with
 * `proxy_protocol on`): TLS passes through the proxy untouched, so the client certificate still
 * reaches Pollen, and the client's address arrives in a PROXY header (proxy-protocol.ts).
 *
 * The trust rule: a connection from a configured proxy must start with a valid header, and its
 * source address becomes the connection's peer address — every reader of `remoteAddress` (the
 * audit trail, logs, `source_ips` rules, rate limits) sees the client, not the proxy. From any
 * other address a PROXY header is refused, never believed; connections without one are handed
 * over as they came. Only the header is read here: the TLS bytes behind it go to the server as
 * sent, so passthrough costs one look at the first packet.
 */
import net from 'node:net';
import { type ProxiedAddress, parseProxyHeader, startsProxyHeader } from './proxy-protocol.js';

export interface ProxyProtocolOptions {
  /** Addresses of the proxies whose connections carry a PROXY header (`--proxy-protocol-from`). */
  from: readonly string[];
  /** How long a connection has to send its header (or, from elsewhere, its first bytes). */
  headerTimeoutMs?: number;
}

export const DEFAULT_HEADER_TIMEOUT_MS = 5000;

export interface ProxyRefusal {
  /** Who connected (the proxy's or the unlisted peer's address). */
  address: string;
  reason: string;
}

/** One spelling per address: `::ffff:10.0.0.1` (a dual-stack listener's IPv4 peer) is `10.0.0.1`. */
export function canonicalAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1] as string;
  return net.isIP(address) === 6 ? new net.SocketAddress({ address, family: 'ipv6' }).address : address;
}

/**
 * A net.Server whose connections, once their header is read and checked, are handed to `server`
 * (`server.emit('connection', socket)`) as if it had accepted them. Listen on the returned server
 * instead of `server`.
 */
export function proxyProtocolFront(
  server: net.Server,
  o: ProxyProtocolOptions & { onRefused: (refusal: ProxyRefusal) => void },
): net.Server {
  const proxies = new Set(o.from.map(canonicalAddress));
  const timeoutMs = o.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS;
  return net.createServer((socket) => {
    const address = canonicalAddress(socket.remoteAddress ?? '');
    const fromProxy = proxies.has(address);
    let received: Buffer = Buffer.alloc(0);
    const refuse = (reason: string): void => {
      done();
      o.onRefused({ address, reason });
      socket.destroy();
    };
    const timer = setTimeout(
      () =>
        refuse(
          fromProxy
            ? `no complete PROXY header within ${timeoutMs} ms`
            : `no bytes within ${timeoutMs} ms after connecting`,
        ),
      timeoutMs,
    );
    const ignoreError = (): void => undefined; // a reset before the hand-over: nothing to serve
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
    };
    const handOver = (rest: Buffer): void => {
      done();
      socket.pause();
      if (rest.length > 0) socket.unshift(rest);
      server.emit('connection', socket);
    };
    const onData = (chunk: Buffer): void => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      if (!fromProxy) {
        const start = startsProxyHeader(received);
        if (start === 'yes')
          refuse('a PROXY header from an address that is not a configured proxy (--proxy-protocol-from)');
        else if (start === 'no') handOver(received);
        return;
      }
      const parsed = parseProxyHeader(received);
      if (parsed.status === 'incomplete') return;
      if (parsed.status === 'invalid') refuse(`${parsed.reason} from a configured proxy`);
      else {
        if (parsed.header.kind === 'proxied') presentAs(socket, parsed.header.source);
        handOver(received.subarray(parsed.length));
      }
    };
    socket.on('error', ignoreError);
    socket.once('close', () => clearTimeout(timer));
    socket.on('data', onData);
  });
}

interface PeerNameHandle {
  getpeername(out: Record<string, unknown>): number;
}

/**
 * Make `peer` the socket's remote address. The TLS socket that wraps this one asks the same TCP
 * handle for its peer name, so the client's address is what every later reader sees.
 */
function presentAs(socket: net.Socket, peer: ProxiedAddress): void {
  const inner = socket as unknown as { _handle?: PeerNameHandle; _peername?: unknown };
  if (!inner._handle) return;
  inner._handle.getpeername = (out) => {
    Object.assign(out, peer);
    return 0;
  };
  inner._peername = undefined;
}
