/**
 * Clients for Pollen RPC servers: gRPC over HTTP/2 with one long-lived session (handshakes cost
 * ~1.4 ms of server CPU; keep connections) and enlarged flow-control windows for model traffic.
 */
import type { ClientHttp2Session, ClientHttp2Stream, SecureClientSessionOptions } from 'node:http2';
import type { DescService } from '@bufbuild/protobuf';
import { type Client, createClient, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { MAX_MESSAGE_BYTES, SESSION_WINDOW, STREAM_WINDOW } from './rpc-server.js';

export interface RpcClientOptions {
  /** https://HOST:PORT, or http://127.0.0.1:PORT for the loopback app APIs. */
  baseUrl: string;
  /** Root CA that must sign the server's certificate; our certificate + key for mutual TLS. */
  tls?: { ca: string; cert?: string; key?: string; servername?: string };
  interceptors?: Interceptor[];
  /** Reject calls that take longer (default: none; set per call with { timeoutMs }). */
  defaultTimeoutMs?: number;
}

export interface RpcChannel {
  client<S extends DescService>(service: S): Client<S>;
  close(): void;
}

/** Enlarges the session's receive window once per connection (Node offers no option for it). */
class WideWindowSessionManager extends Http2SessionManager {
  readonly #widened = new WeakSet<ClientHttp2Session>();

  override async request(...args: Parameters<Http2SessionManager['request']>): Promise<ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session as ClientHttp2Session | undefined;
    if (session && !this.#widened.has(session)) {
      this.#widened.add(session);
      session.setLocalWindowSize(SESSION_WINDOW);
    }
    return stream;
  }
}

export function openChannel(o: RpcClientOptions): RpcChannel {
  const nodeOptions: SecureClientSessionOptions = {
    settings: { initialWindowSize: STREAM_WINDOW },
    ...(o.tls
      ? {
          ca: o.tls.ca,
          cert: o.tls.cert,
          key: o.tls.key,
          servername: o.tls.servername,
          minVersion: 'TLSv1.3' as const,
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
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    defaultTimeoutMs: o.defaultTimeoutMs,
  });
  return {
    client: (service) => createClient(service, transport),
    close: () => manager.abort(),
  };
}
