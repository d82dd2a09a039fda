/**
 * Clients for Pollen RPC servers: gRPC over HTTP/2 with one long-lived session (handshakes cost
 * ~1.4 ms of server CPU; keep connections) and enlarged flow-control windows for model traffic.
 * Its clients carry a bulk chunk client on the same session (bulk-chunks.ts), which
 * uploadChunks / downloadChunks use for chunk bytes.
 */
import type { SecureClientSessionOptions } from 'node:http2';
import https from 'node:https';
import type { DescService } from '@bufbuild/protobuf';
import { type Client, createClient, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import {
  BULK_CONCURRENCY,
  type BulkChunkClient,
  type BulkMethod,
  Http1BulkClient,
  Http2BulkClient,
  withBulk,
} from './bulk-chunks.js';
import { WideWindowSessionManager } from './chunk-transfer.js';
import { MAX_MESSAGE_BYTES, MAX_SESSION_MEMORY_MB, STREAM_WINDOW } from './rpc-server.js';
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
  /** PUT/GET of single chunks on the same connection (undefined when turned off). */
  readonly bulk: BulkChunkClient | undefined;
  close(): void;
}

export function openChannel(o: RpcClientOptions): RpcChannel {
  const nodeOptions: SecureClientSessionOptions = {
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
  // than HTTP/2 streams, bulk-chunks.ts); the loopback cleartext APIs speak only HTTP/2.
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
    client: (service) => {
      const client = createClient(service, transport);
      return bulk ? withBulk(client, bulk) : client;
    },
    bulk,
    close: () => {
      manager.abort();
      agent?.destroy();
    },
  };
}
