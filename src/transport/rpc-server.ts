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
  createContextValues,
  type Interceptor,
} from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { Logger } from 'pino';
import { type FailureReporter, PollenError } from '../errors.js';
import { isBulkChunkRequest } from './bulk-protocol.js';
import { type BulkChunkRoute, serveBulkChunk } from './bulk-server.js';
import { peerContextKey } from './context.js';
import { errorBoundary } from './errors.js';
import { type FastUnary, isFastCandidate, serveFast } from './grpc-fast.js';
import { answerUndecodableAsInvalid, clampDeadlineHeaders } from './request-guards.js';
import { type PeerIdentity, peerIdentity, type TlsMaterial } from './tls.js';

export const STREAM_WINDOW = 16 << 20;
export const SESSION_WINDOW = 64 << 20;
/**
 * Memory nghttp2 may hold per session, in MB (Node's default, 10, is below one session window:
 * with several 4 MiB chunks in flight a peer gets NGHTTP2_ENHANCE_YOUR_CALM).
 */
export const MAX_SESSION_MEMORY_MB = 128;
/** Largest single RPC message: a 4 MiB chunk plus framing, or a message batch. */
export const MAX_MESSAGE_BYTES = 32 << 20;

/** HTTP/2 settings for http2.createSecureServer / http2.connect: wide stream windows. */
export const HTTP2_SETTINGS: http2.Settings = Object.freeze({ initialWindowSize: STREAM_WINDOW });

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
  };
  routes: (router: ConnectRouter) => void;
  interceptors?: Interceptor[];
  /** Refuse a verified peer (e.g. its serial is on the CRL); the connection is closed. */
  admitPeer?: (peer: PeerIdentity) => string | undefined;
  /** Called for refused connections, for logs. */
  onRefused?: (reason: string, peer: PeerIdentity | undefined) => void;
  /**
   * Hot unary methods answered directly on the HTTP/2 stream (grpc-fast.ts); they must do their
   * own authentication, since interceptors do not run for them.
   */
  fast?: FastUnary[];
  /** Serve PUT/GET `/pollen.v1.chunks/{id}` (bulk-server.ts) beside the Connect routes. */
  bulk?: BulkChunkRoute;
  /**
   * Where an unexpected failure is logged, under the reference its client is told (every path:
   * Connect routes, fast routes, bulk chunks). Clients never see more than that reference.
   */
  log: Pick<Logger, 'error'>;
}

export interface RpcServer {
  readonly port: number;
  readonly url: string;
  /** Close connections whose peer is no longer admitted (after a CRL update). */
  recheckPeers(): number;
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
      interceptors: [errorBoundary(failureReporter(o.log)), ...(o.interceptors ?? [])],
      readMaxBytes: MAX_MESSAGE_BYTES,
      writeMaxBytes: MAX_MESSAGE_BYTES,
    },
  };
}

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
  const peers = new WeakMap<object, PeerIdentity | undefined>();
  const peerOf = (req: { socket: unknown; stream?: { session?: object } }): PeerIdentity | undefined => {
    const socket = req.socket as TLSSocket;
    if (!o.tls || typeof socket.getPeerCertificate !== 'function') return undefined;
    const key = req.stream?.session ?? socket;
    if (peers.has(key)) return peers.get(key);
    const peer = peerIdentity(socket);
    peers.set(key, peer);
    return peer;
  };
  const contextValues = (req: unknown): ContextValues => {
    const values = createContextValues();
    const peer = peerOf(req as never);
    if (peer) values.set(peerContextKey, peer);
    return values;
  };
  const report = failureReporter(o.log);
  const pipeline = connectPipeline(o);
  const handler = connectNodeAdapter({ ...pipeline.options, routes: pipeline.routes, contextValues });
  const fast = new Map((o.fast ?? []).map((r) => [r.path, r]));
  const settings = { ...HTTP2_SETTINGS, maxConcurrentStreams: 1000 };
  const server = o.tls
    ? http2.createSecureServer({
        cert: o.tls.cert,
        key: o.tls.key,
        ca: o.tls.ca,
        requestCert: o.tls.requireClientCert,
        rejectUnauthorized: o.tls.requireClientCert,
        minVersion: 'TLSv1.3',
        allowHTTP1: true,
        settings,
        maxSessionMemory: MAX_SESSION_MEMORY_MB,
      })
    : http2.createServer({ settings, maxSessionMemory: MAX_SESSION_MEMORY_MB });
  const sockets = new Set<TLSSocket>();
  widenServerWindows(server);
  if (o.tls) {
    server.on('secureConnection', (socket: TLSSocket) => {
      const peer = peerIdentity(socket);
      if (o.tls?.requireClientCert) {
        const refusal = !peer ? 'the client certificate carries no Pollen identity' : o.admitPeer?.(peer);
        if (refusal) {
          o.onRefused?.(refusal, peer);
          socket.destroy();
          return;
        }
      }
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
  }
  // Handshake refusals (no certificate, another CA, wrong key usage) are otherwise silent.
  server.on('tlsClientError', (err: Error & { code?: string }) =>
    o.onRefused?.(`TLS handshake failed: ${err.code ?? err.message}`, undefined),
  );
  const bulk = o.bulk;
  server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    clampDeadlineHeaders(req.headers);
    if (bulk && isBulkChunkRequest(req.url)) void serveBulkChunk(bulk, req, res, peerOf(req), report);
    else {
      const route = fast.size > 0 && isFastCandidate(req) ? fast.get(req.url) : undefined;
      if (route) void serveFast(route, req, res, contextValues(req), MAX_MESSAGE_BYTES, report);
      else handler(req, res);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = isIP(o.host) === 6 ? `[${o.host}]` : o.host;
  return {
    port,
    url: `${o.tls ? 'https' : 'http'}://${host}:${port}`,
    recheckPeers(): number {
      let closed = 0;
      for (const socket of sockets) {
        const peer = peerIdentity(socket);
        const refusal = peer ? o.admitPeer?.(peer) : undefined;
        if (refusal) {
          o.onRefused?.(refusal, peer);
          socket.destroy();
          closed++;
        }
      }
      return closed;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
        // Sessions of cleartext servers are not in `sockets`; closing the server ends them.
        setTimeout(resolve, 2000).unref();
      }),
  };
}
