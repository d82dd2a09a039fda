/**
 * Clients for Pollen RPC servers: gRPC over HTTP/2 with one long-lived session (handshakes cost
 * ~1.4 ms of server CPU; keep connections) and enlarged flow-control windows for model traffic.
 * A channel also holds a client of its server's bulk chunk route (bulk-client.ts) and hands out
 * the ChunkTransport that moves chunk bytes over it (RpcChannel.chunks).
 */
import type * as http2 from 'node:http2';
import https from 'node:https';
import type { DescService } from '@bufbuild/protobuf';
import { type Client, createClient, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager, type Http2SessionOptions } from '@connectrpc/connect-node';
import { type BulkChunkClient, bulkChunkTransport, Http1BulkClient, Http2BulkClient } from './bulk-client.js';
import { BULK_CONCURRENCY, type BulkMethod } from './bulk-protocol.js';
import { type ChunkRpcClient, rpcChunkTransport } from './chunk-rpc.js';
import type { ChunkTransport } from './chunk-transport.js';
import {
  HTTP2_SETTINGS,
  MAX_MESSAGE_BYTES,
  MAX_SESSION_MEMORY_MB,
  SESSION_WINDOW,
  STREAM_WINDOW,
} from './http2-settings.js';
import { checkPollenServer } from './tls.js';

export interface RpcClientOptions {
  /** https://HOST:PORT, or http://127.0.0.1:PORT for the loopback app APIs. */
  baseUrl: string;
  /** Root CA that must sign the server's certificate; our certificate + key for mutual TLS. */
  tls?: { ca: string; cert?: string; key?: string; servername?: string };
  interceptors?: Interceptor[];
  /** Reject calls that take longer (default: none; set per call with { timeoutMs }). */
  defaultTimeoutMs?: number;
  /**
   * Authentication headers for bulk chunk requests, which interceptors do not see (the node-key
   * session HMAC, the per-run app token). `false` turns the bulk route off for this channel.
   */
  bulkHeaders?: ((method: BulkMethod, id: string) => Record<string, string>) | false;
}

export interface RpcChannel {
  client<S extends DescService>(service: S): Client<S>;
  /**
   * How to move chunks to and from this channel's server: over the bulk route, with
   * MissingChunks (and, where the server has no bulk route, everything) over `rpc`, a client of
   * this channel; over `rpc` alone when the channel's bulk route is turned off.
   */
  chunks(rpc: ChunkRpcClient): ChunkTransport;
  /** PUT/GET of single chunks on the same connection (undefined when turned off). */
  readonly bulk: BulkChunkClient | undefined;
  close(): void;
}

export function openChannel(o: RpcClientOptions): RpcChannel {
  const nodeOptions: http2.SecureClientSessionOptions = {
    settings: { initialWindowSize: STREAM_WINDOW },
    maxSessionMemory: MAX_SESSION_MEMORY_MB,
    ...(o.tls
      ? {
          ca: o.tls.ca,
          cert: o.tls.cert,
          key: o.tls.key,
          servername: o.tls.servername,
          minVersion: 'TLSv1.3' as const,
          checkServerIdentity: checkPollenServer,
        }
      : {}),
  };
  const manager = new WideWindowSessionManager(
    o.baseUrl,
    { pingIntervalMs: 30_000, idleConnectionTimeoutMs: 600_000 },
    nodeOptions,
  );
  const transport = createGrpcTransport({
    baseUrl: o.baseUrl,
    sessionManager: manager,
    interceptors: o.interceptors,
    // Model chunks are float noise to gzip: compressing them costs CPU and halves throughput.
    acceptCompression: [],
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    defaultTimeoutMs: o.defaultTimeoutMs,
  });
  const bulkHeaders = o.bulkHeaders;
  // Over TLS, chunk bytes take a few HTTP/1.1 keep-alive connections to the same port (faster
  // than HTTP/2 streams, bulk-client.ts); the loopback cleartext APIs speak only HTTP/2.
  const agent =
    bulkHeaders !== false && o.tls
      ? new https.Agent({
          keepAlive: true,
          maxSockets: BULK_CONCURRENCY,
          ca: o.tls.ca,
          cert: o.tls.cert,
          key: o.tls.key,
          servername: o.tls.servername,
          minVersion: 'TLSv1.3',
          checkServerIdentity: checkPollenServer,
          ALPNProtocols: ['http/1.1'],
        })
      : undefined;
  let bulk: BulkChunkClient | undefined;
  if (agent) bulk = new Http1BulkClient({ baseUrl: o.baseUrl, agent, headers: bulkHeaders || undefined });
  else if (bulkHeaders !== false)
    bulk = new Http2BulkClient({
      request: (method, path, headers) => manager.request(method, path, headers, {}),
      headers: bulkHeaders,
    });
  return {
    client: (service) => createClient(service, transport),
    chunks: (rpc) => (bulk ? bulkChunkTransport(bulk, rpcChunkTransport(rpc)) : rpcChunkTransport(rpc)),
    bulk,
    close: () => {
      manager.abort();
      agent?.destroy();
    },
  };
}

// HTTP/2 flow control. The defaults (64 KiB windows) cap a stream at about one window per round
// trip; chunk transfers want megabytes in flight.

/**
 * A connect-node session manager whose connections have wide receive windows (for downloads):
 * pass it as `sessionManager` to createGrpcTransport. `http2SessionOptions` are those of
 * http2.connect (e.g. `{ ca }`); HTTP2_SETTINGS are added.
 */
export class WideWindowSessionManager extends Http2SessionManager {
  readonly #widened = new WeakSet<http2.ClientHttp2Session>();

  constructor(
    url: URL | string,
    pingOptions?: Http2SessionOptions,
    http2SessionOptions: http2.SecureClientSessionOptions = {},
  ) {
    super(url, pingOptions, {
      ...http2SessionOptions,
      settings: { ...HTTP2_SETTINGS, ...http2SessionOptions.settings },
    });
  }

  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, 'signal'>,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session as http2.ClientHttp2Session | undefined;
    if (session !== undefined && !session.destroyed && !this.#widened.has(session)) {
      this.#widened.add(session);
      session.setLocalWindowSize(SESSION_WINDOW);
      // connect-node 2.1 may destroy a session with an error ("PING timed out", a late ping reply
      // on a loaded host) after it has removed its own 'error' listener: unheard, that error
      // would end the process. The streams on the session still fail with it, and the manager
      // opens a new session for the next call.
      session.on('error', () => {});
    }
    return stream;
  }
}
