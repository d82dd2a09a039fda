/**
 * One bootstrap for every Pollen RPC server: Connect routes (gRPC, gRPC-Web and Connect from the
 * same handlers) on an HTTP/2 server. Network-facing APIs run TLS, optionally mutual; the loopback
 * app APIs may run cleartext HTTP/2 but only on a loopback address.
 *
 * Model traffic is large, so HTTP/2 flow-control windows are enlarged: Node's 64 KiB defaults
 * cap a loopback upload at about a third of raw TLS throughput.
 *
 * With `bulk`, requests under `/pollen.v1.chunks/` go to the bulk chunk route (bulk-server.ts)
 * before Connect sees them: same port, same TLS, same peer checks.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  type ConnectRouter,
  type ConnectRouterOptions,
  type ContextValues,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type Interceptor,
} from '@connectrpc/connect';
import { codeFromHttpStatus } from '@connectrpc/connect/protocol-connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { Logger } from 'pino';
import { type FailureReporter, PollenError } from '../errors.js';
import { newRequestId, withLogContext } from '../util/log-context.js';
import { authorizationHeaders } from './authorization-headers.js';
import { isBulkChunkRequest } from './bulk-protocol.js';
import { type BulkChunkRoute, serveBulkChunk } from './bulk-server.js';
import { addressContextKey, authorizationContextKey, peerContextKey } from './context.js';
import { errorBoundary, toConnectError } from './errors.js';
import { answerError, type FastUnary, isFastCandidate, serveFast } from './grpc-fast.js';
import type { FastStream } from './grpc-fast-chunks.js';
import {
  HTTP2_SETTINGS,
  MAX_MESSAGE_BYTES,
  MAX_SESSION_MEMORY_MB,
  SESSION_WINDOW,
} from './http2-settings.js';
import { listenOn } from './listen-failure.js';
import { type ProxyProtocolOptions, proxyProtocolFront } from './proxy-listener.js';
import { answerUndecodableAsInvalid, clampDeadlineHeaders } from './request-guards.js';
import { type PeerIdentity, peerIdentity, type TlsMaterial } from './tls.js';

// Servers pass them to http2.createSecureServer; the rest is the clients' business too.
export { HTTP2_SETTINGS } from './http2-settings.js';

/** Widen the connection window of every session a server accepts. */
export function widenServerWindows(server: http2.Http2Server | http2.Http2SecureServer): void {
  server.on('session', (session: http2.ServerHttp2Session) => {
    session.setLocalWindowSize(SESSION_WINDOW);
  });
}

export interface RpcServerOptions {
  host: string;
  port: number;
  /** TLS material; without it the server is cleartext HTTP/2 and must listen on loopback. */
  tls?: TlsMaterial & {
    /** Require a client certificate chaining to `ca` (mutual TLS). */
    requireClientCert: boolean;
    /**
     * Without `requireClientCert`: still ask for a client certificate, and admit callers without
     * one (the Control API: people with bearer tokens). A certificate that is offered must chain
     * to `ca`: otherwise the connection is closed right after the handshake, as a client sees a
     * refused certificate (CERT_NOT_ACCEPTED), and never served.
     */
    requestClientCert?: boolean;
  };
  routes: (router: ConnectRouter) => void;
  interceptors?: Interceptor[];
  /** What this server is, for messages: "the Fleet API". */
  name?: string;
  /** The option that sets its address, for hints: "--fleet-address". */
  addressOption?: string;
  /**
   * Refuse a verified peer (e.g. its serial is on the CRL): every call it makes is answered with
   * this error, on every path (Connect, fast and bulk routes), after the handshake. A peer whose
   * certificate is not from our CA never gets that far: the handshake refuses it.
   */
  admitPeer?: (peer: PeerIdentity) => PollenError | undefined;
  /**
   * While this returns an error, every call (any peer, every path) is answered with it: the
   * server is up but must not serve (its SuperLink lost the store lease).
   */
  unavailable?: () => PollenError | undefined;
  /** Called for each refusal (`event`: PEER_EVENTS), for logs. */
  onRefused?: (refusal: PeerRefusal) => void;
  /**
   * Hot unary methods answered directly on the HTTP/2 stream (grpc-fast.ts); they must do their
   * own authentication, since interceptors do not run for them.
   */
  fast?: FastUnary[];
  /**
   * Behind a TCP proxy (proxy-listener.ts): connections from `from` start with a PROXY header
   * whose source address becomes the peer address; a header from anywhere else is refused.
   */
  proxyProtocol?: ProxyProtocolOptions;
  /** Streaming methods answered on the HTTP/2 stream (grpc-fast-chunks.ts); their own authentication too. */
  fastStreams?: FastStream[];
  /** Serve PUT/GET `/pollen.v1.chunks/{id}` (bulk-server.ts) beside the Connect routes. */
  bulk?: BulkChunkRoute;
  /** Told of every request by path (every route: Connect, fast and bulk; `chunks` for bulk), for metrics. */
  onRequest?: (path: string) => void;
  /** Told of every request and, when its answer ends, of its gRPC code (metrics: RequestObserver). */
  observe?: RequestObserver;
  /**
   * Where an unexpected failure is logged, under the reference its client is told (every path:
   * Connect routes, fast routes, bulk chunks). Clients never see more than that reference.
   */
  log: Pick<Logger, 'error'>;
}

/**
 * Told each route once, when the server starts (a path the server serves, `chunks` for bulk
 * transfers, `other` for any other path: a bounded set); returns what records each answer on that
 * route.
 */
export type RequestObserver = (route: string) => AnswerRecorder;

/**
 * Records one answer: its gRPC code (0: OK; a plain HTTP answer's status mapped as Connect maps
 * it) and when its request arrived (`performance.now()`).
 */
export type AnswerRecorder = (code: number, arrivedAt: number) => void;

/** The stable `event` of a refusal at the connection level (logged by the server's owner). */
export const PEER_EVENTS = {
  /** A TLS handshake failed (no certificate, another CA, wrong key usage): the peer got an alert. */
  handshakeFailed: 'tls.handshake.failed',
  /** A verified peer is refused (its certificate revoked): its calls are answered with the code. */
  refused: 'peer.refused',
  /** An open connection of a peer refused since (a newer CRL) was closed. */
  closed: 'peer.closed',
  /** A PROXY header refused: from an unlisted address, missing, malformed, oversized or too slow. */
  proxyRefused: 'proxy.refused',
} as const;

export interface PeerRefusal {
  event: (typeof PEER_EVENTS)[keyof typeof PEER_EVENTS];
  reason: string;
  /** The TCP peer's address, where the refusal happens before TLS (a refused PROXY header). */
  address?: string;
  /** The code the peer is answered with (none for a failed handshake). */
  code?: string;
  peer?: PeerIdentity;
}

/** The refusal a peer's calls are answered with, for the Connect pipeline. */
const refusalContextKey = createContextKey<PollenError | undefined>(undefined, {
  description: 'refused peer',
});

/** First in the Connect pipeline after the error boundary: a refused peer's calls end here. */
const refuseRefusedPeers: Interceptor = (next) => async (req) => {
  const refusal = req.contextValues.get(refusalContextKey);
  if (refusal) throw toConnectError(refusal);
  return next(req);
};

/** A bulk route / fast route that answers every call with `refusal`. */
const refusedBulk = (route: BulkChunkRoute, refusal: PollenError): BulkChunkRoute => ({
  ...route,
  authorize: () => {
    throw refusal;
  },
});
const refusedFast = (route: FastUnary, refusal: PollenError): FastUnary => ({
  ...route,
  call: () => Promise.reject(refusal),
});
const refusedStream = (route: FastStream, refusal: PollenError): FastStream => ({
  ...route,
  serve: async (req, res, report) => {
    answerError(res, refusal, report);
    req.resume();
  },
});

const UNTRUSTED = (): PollenError =>
  new PollenError('CERT_NOT_ACCEPTED', 'The client certificate is not from this project’s CA');

const NO_IDENTITY = (): PollenError =>
  new PollenError('UNAUTHENTICATED', 'The client certificate carries no Pollen identity', {
    hint: 'Use a certificate made by `pollen cert site` or the Certificate Service (it names the participant in a pollen:// URI).',
  });

/** The verified peer of a connection, and whether it offered a certificate that did not verify. */
interface PeerOnSocket {
  peer: PeerIdentity | undefined;
  untrusted: boolean;
}

export interface RpcServer {
  readonly port: number;
  readonly url: string;
  /** Bytes received and sent on this server's connections so far (TLS records included). */
  traffic(): { received: number; sent: number };
  /** Close connections whose peer is no longer admitted (after a CRL update). */
  recheckPeers(): number;
  /** Serve with a new certificate and key from now on (open connections keep theirs). */
  useTls(tls: TlsMaterial): void;
  close(): Promise<void>;
}

/** Where a server logs an unexpected failure, under the reference its client is told. */
export function failureReporter(log: Pick<Logger, 'error'>): FailureReporter {
  return (reference, err) => log.error({ err, reference }, 'internal error answered as INTERNAL');
}

/**
 * The Connect side of every Pollen server: the error boundary outermost, then the server's own
 * interceptors and routes, undecodable requests answered INVALID_ARGUMENT, and the message size
 * caps. startRpcServer serves it over HTTP/2 (with the TLS peer in the context values); Connect's
 * router transport (`createRouterTransport(pipeline.routes, { router: pipeline.options })`) runs
 * the same pipeline in memory.
 */
export function connectPipeline(o: Pick<RpcServerOptions, 'routes' | 'interceptors' | 'log'>): {
  routes: (router: ConnectRouter) => void;
  options: ConnectRouterOptions & { interceptors: Interceptor[] };
} {
  return {
    routes: (router) => {
      o.routes(router);
      answerUndecodableAsInvalid(router);
    },
    options: {
      interceptors: [
        requestScope,
        errorBoundary(failureReporter(o.log)),
        refuseRefusedPeers,
        ...(o.interceptors ?? []),
      ],
      readMaxBytes: MAX_MESSAGE_BYTES,
      writeMaxBytes: MAX_MESSAGE_BYTES,
    },
  };
}

/** Each call's log lines carry one request id (log.ts adds the scope's bindings). */
const requestScope: Interceptor = (next) => (req) =>
  withLogContext({ requestId: newRequestId() }, () => next(req));

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

export async function startRpcServer(o: RpcServerOptions): Promise<RpcServer> {
  if (!o.tls && !isLoopback(o.host))
    throw new PollenError('INVALID_ARGUMENT', `A cleartext API may only listen on loopback, not ${o.host}`, {
      hint: 'Give TLS material, or listen on 127.0.0.1.',
    });
  // The peer certificate is parsed once per connection, not once per request (getPeerCertificate
  // costs ~0.15 ms: with a thousand polling nodes that was a quarter of the server's CPU). The
  // cache is keyed by the HTTP/2 session (req.socket is a new proxy for every stream).
  const peers = new WeakMap<object, PeerOnSocket>();
  const requestOnly = !!o.tls && !o.tls.requireClientCert && !!o.tls.requestClientCert;
  const onSocket = (socket: TLSSocket): PeerOnSocket => {
    const peer = peerIdentity(socket);
    // Asked for but not required: an offered certificate that does not verify is not ignored.
    const untrusted = requestOnly && !peer && !socket.authorized && !!socket.getPeerCertificate()?.raw;
    return { peer, untrusted };
  };
  const socketOf = (req: { socket: unknown; stream?: { session?: object } }): PeerOnSocket => {
    const socket = req.socket as TLSSocket;
    if (!o.tls || typeof socket.getPeerCertificate !== 'function')
      return { peer: undefined, untrusted: false };
    const key = req.stream?.session ?? socket;
    const known = peers.get(key);
    if (known) return known;
    const found = onSocket(socket);
    peers.set(key, found);
    return found;
  };
  /** Checked on every request, so a CRL update applies to the next call of an open connection. */
  const refusalOf = ({ peer, untrusted }: PeerOnSocket): PollenError | undefined => {
    if (peer) return o.tls?.requireClientCert || requestOnly ? o.admitPeer?.(peer) : undefined;
    if (untrusted) return UNTRUSTED();
    return o.tls?.requireClientCert ? NO_IDENTITY() : undefined;
  };
  /** What one call is answered with: the server's own unavailability, else the peer's refusal. */
  const callRefusalOf = (found: PeerOnSocket): PollenError | undefined =>
    o.unavailable?.() ?? refusalOf(found);
  const contextValues = (req: unknown, found = socketOf(req as never)): ContextValues => {
    const values = createContextValues();
    if (found.peer) values.set(peerContextKey, found.peer);
    const address = (req as { socket?: { remoteAddress?: string } }).socket?.remoteAddress;
    if (address) values.set(addressContextKey, address);
    values.set(
      authorizationContextKey,
      authorizationHeaders(req as Parameters<typeof authorizationHeaders>[0]),
    );
    const refusal = callRefusalOf(found);
    if (refusal) values.set(refusalContextKey, refusal);
    return values;
  };
  const report = failureReporter(o.log);
  const pipeline = connectPipeline(o);
  const handler = connectNodeAdapter({ ...pipeline.options, routes: pipeline.routes, contextValues });
  const fast = new Map((o.fast ?? []).map((r) => [r.path, r]));
  const fastStreams = new Map((o.fastStreams ?? []).map((r) => [r.path, r]));
  const settings = { ...HTTP2_SETTINGS, maxConcurrentStreams: 1000 };
  const server = o.tls
    ? http2.createSecureServer({
        cert: o.tls.cert,
        key: o.tls.key,
        ca: o.tls.ca,
        requestCert: o.tls.requireClientCert || requestOnly,
        rejectUnauthorized: o.tls.requireClientCert,
        minVersion: 'TLSv1.3',
        allowHTTP1: true,
        settings,
        maxSessionMemory: MAX_SESSION_MEMORY_MB,
      })
    : http2.createServer({ settings, maxSessionMemory: MAX_SESSION_MEMORY_MB });
  const sockets = new Set<TLSSocket>();
  /** Connections of refused peers, open only to be answered with the refusal (closed with the server). */
  const refusedSockets = new Set<TLSSocket>();
  widenServerWindows(server);
  if (o.tls) {
    server.on('secureConnection', (socket: TLSSocket) => {
      // A refused peer stays connected: each of its calls is answered with the refusal's code.
      const found = onSocket(socket);
      const { peer } = found;
      if (found.untrusted) {
        o.onRefused?.({ event: PEER_EVENTS.handshakeFailed, reason: UNTRUSTED().message });
        socket.destroy();
        return;
      }
      const refusal = refusalOf(found);
      if (refusal) {
        o.onRefused?.({ event: PEER_EVENTS.refused, reason: refusal.message, code: refusal.code, peer });
        refusedSockets.add(socket);
        socket.once('close', () => refusedSockets.delete(socket));
        return;
      }
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
  }
  // Handshake refusals (no certificate, another CA, wrong key usage) are otherwise silent.
  server.on('tlsClientError', (err: Error & { code?: string }) =>
    o.onRefused?.({
      event: PEER_EVENTS.handshakeFailed,
      reason: `TLS handshake failed: ${err.code ?? err.message}`,
    }),
  );
  const bulk = o.bulk;
  const traffic = socketTraffic(server);
  const observe =
    o.observe &&
    observeRequests(o.observe, [...fast.keys(), ...fastStreams.keys(), ...connectPaths(pipeline.routes)]);
  server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    clampDeadlineHeaders(req.headers);
    observe?.(req, res);
    o.onRequest?.(isBulkChunkRequest(req.url) ? 'chunks' : (req.url.split('?')[0] ?? req.url));
    const found = socketOf(req);
    const { peer } = found;
    const refusal = callRefusalOf(found);
    if (bulk && isBulkChunkRequest(req.url))
      void serveBulkChunk(refusal ? refusedBulk(bulk, refusal) : bulk, req, res, peer, report);
    else {
      const candidate = (fast.size > 0 || fastStreams.size > 0) && isFastCandidate(req);
      const route = candidate ? fast.get(req.url) : undefined;
      const stream = candidate ? fastStreams.get(req.url) : undefined;
      if (stream) void (refusal ? refusedStream(stream, refusal) : stream).serve(req, res, report);
      else if (route)
        void serveFast(
          refusal ? refusedFast(route, refusal) : route,
          req,
          res,
          contextValues(req, found),
          MAX_MESSAGE_BYTES,
          report,
        );
      else handler(req, res);
    }
  });
  const listener = o.proxyProtocol
    ? proxyProtocolFront(server, {
        ...o.proxyProtocol,
        onRefused: ({ address, reason }) =>
          o.onRefused?.({ event: PEER_EVENTS.proxyRefused, reason, address }),
      })
    : server;
  await listenOn(listener, {
    host: o.host,
    port: o.port,
    what: o.name ?? 'the server',
    option: o.addressOption,
  });
  const port = (listener.address() as AddressInfo).port;
  const host = isIP(o.host) === 6 ? `[${o.host}]` : o.host;
  return {
    port,
    url: `${o.tls ? 'https' : 'http'}://${host}:${port}`,
    useTls(tls) {
      if (!o.tls) throw new PollenError('USAGE', 'This server runs without TLS');
      (server as http2.Http2SecureServer).setSecureContext({
        cert: tls.cert,
        key: tls.key,
        ca: tls.ca,
        minVersion: 'TLSv1.3',
      });
    },
    traffic,
    /** Close the open connections of peers refused now; refused ones never joined `sockets`. */
    recheckPeers(): number {
      let closed = 0;
      for (const socket of sockets) {
        const peer = peerIdentity(socket);
        const refusal = peer ? o.admitPeer?.(peer) : undefined;
        if (refusal) {
          // Calls in flight (a long poll) end with the connection; the peer's next connection is
          // answered with the code.
          o.onRefused?.({ event: PEER_EVENTS.closed, reason: refusal.message, code: refusal.code, peer });
          socket.destroy();
          closed++;
        }
      }
      return closed;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        for (const socket of refusedSockets) socket.destroy();
        if (listener !== server) listener.close();
        server.close(() => resolve());
        // Sessions of cleartext servers are not in `sockets`; closing the server ends them.
        setTimeout(resolve, 2000).unref();
      }),
  };
}

/** The paths of the Connect routes (learnt from a router they are added to, never served). */
function connectPaths(routes: (router: ConnectRouter) => void): string[] {
  const router = createConnectRouter();
  routes(router);
  return router.handlers.map((h) => h.requestPath);
}

const RECORDER = Symbol('answer recorder');
const ARRIVED = Symbol('arrived at');
/** A response whose answer is recorded when it closes. */
type ObservedResponse = http2.Http2ServerResponse & { [RECORDER]?: AnswerRecorder; [ARRIVED]?: number };

/**
 * Record each request's answer under its route's recorder, bound once per route: a request costs
 * two properties on its response and one shared listener, no closure.
 */
function observeRequests(
  observer: RequestObserver,
  served: string[],
): (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void {
  const byPath = new Map(served.map((path) => [path, observer(path)]));
  const chunks = observer('chunks');
  const other = observer('other');
  return (req, res) => {
    const url = req.url;
    const query = url.indexOf('?');
    const observed = res as ObservedResponse;
    observed[RECORDER] = isBulkChunkRequest(url)
      ? chunks
      : (byPath.get(query < 0 ? url : url.slice(0, query)) ?? other);
    observed[ARRIVED] = performance.now();
    // 'close' ends every answer, finished or cut short, and is emitted once: `on`, not `once`,
    // spares a wrapper a request.
    res.on('close', recordAnswer);
  };
}

/**
 * The code an answer ended with: gRPC answers carry it in the trailers sent (or the headers of a
 * trailers-only answer); a plain HTTP answer's status is mapped. Read once, at the end, so
 * nothing wraps the response while it is written.
 */
function recordAnswer(this: ObservedResponse): void {
  // An HTTP/1.1 request (allowHTTP1) has no HTTP/2 stream.
  const trailers = (this.stream as http2.ServerHttp2Stream | undefined)?.sentTrailers;
  const grpc = trailers?.['grpc-status'] ?? this.getHeader('grpc-status');
  const code =
    grpc !== undefined
      ? Number(grpc)
      : !this.headersSent
        ? 1 // closed before any answer: the client went away
        : this.statusCode < 300
          ? 0
          : codeFromHttpStatus(this.statusCode);
  this[RECORDER]?.(code, this[ARRIVED] ?? performance.now());
}

/** Bytes in and out of every connection a server accepts: the open ones read at call time. */
function socketTraffic(
  server: http2.Http2Server | http2.Http2SecureServer,
): () => { received: number; sent: number } {
  const open = new Set<import('node:net').Socket>();
  let received = 0;
  let sent = 0;
  server.on('connection', (socket: import('node:net').Socket) => {
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      received += socket.bytesRead;
      sent += socket.bytesWritten;
    });
  });
  return () => {
    let r = received;
    let s = sent;
    for (const socket of open) {
      r += socket.bytesRead;
      s += socket.bytesWritten;
    }
    return { received: r, sent: s };
  };
}
