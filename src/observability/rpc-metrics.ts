/**
 * The RPC servers' metrics (Fleet, Control, ServerAppIo, ClientAppIo): calls and latency by
 * method and gRPC code, bytes in and out, and authentication failures by reason.
 *
 * Label values are bounded: `method` is one of the server's own routes (`chunks` for bulk
 * transfers, `other` for a path it does not serve), `code` one of gRPC's seventeen, `reason` one
 * of a fixed few. Answers are counted by code in a plain array per route, read into the counter
 * at scrape time; the latency histogram's child is bound once per route. No label object, no
 * lookup and no closure a request.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { AnswerRecorder, PeerRefusal, RequestObserver } from '../transport/rpc-server.js';

/** gRPC's status names, as grpc-prometheus labels them. */
const CODES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
] as const;
const UNKNOWN = 2;
const UNAUTHENTICATED = 16;
const PERMISSION_DENIED = 7;

/** Why a caller was not let in: a refused TLS handshake, a revoked certificate, a refused call. */
const REFUSAL_REASONS: Record<PeerRefusal['event'], string> = {
  'tls.handshake.failed': 'tls_handshake',
  'peer.refused': 'certificate_revoked',
  'peer.closed': 'certificate_revoked',
  'proxy.refused': 'proxy_header',
};

export interface Traffic {
  traffic(): { received: number; sent: number };
}

/** `/pollen.v1.Fleet/PullMessages` → `PullMessages`. */
const methodOf = (path: string): string => path.slice(path.lastIndexOf('/') + 1) || path;

/** The answers of one API's method, by code, until a scrape reads them (exact at every scrape). */
interface RouteCounts {
  readonly labels: { api: string; method: string };
  readonly codes: Float64Array;
  readonly latency: Histogram.Internal<'api' | 'method'>;
}

export class RpcMetrics {
  readonly #latency: Histogram<'api' | 'method'>;
  readonly #authFailures: Counter<'api' | 'reason'>;
  readonly #servers = new Map<string, Traffic>();
  /** By `api` NUL `method`: two paths with one method name share their series, as before. */
  readonly #routes = new Map<string, RouteCounts>();

  constructor(registry: Registry) {
    const routes = this.#routes;
    new Counter({
      name: 'pollen_rpc_server_handled_total',
      help: 'RPCs answered, by API, method and gRPC status code.',
      labelNames: ['api', 'method', 'code'],
      registers: [registry],
      collect() {
        this.reset();
        for (const { labels, codes } of routes.values())
          for (let c = 0; c < codes.length; c++)
            if (codes[c]! > 0) this.inc({ ...labels, code: CODES[c]! }, codes[c]);
      },
    });
    this.#latency = new Histogram({
      name: 'pollen_rpc_server_handling_seconds',
      help: 'Time from an RPC arriving to its answer ending, by API and method (long polls wait up to 20 s).',
      labelNames: ['api', 'method'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 25],
      registers: [registry],
    });
    this.#authFailures = new Counter({
      name: 'pollen_auth_failures_total',
      help: 'Callers refused: TLS handshakes refused, revoked certificates, calls answered Unauthenticated or PermissionDenied.',
      labelNames: ['api', 'reason'],
      registers: [registry],
    });
    const servers = this.#servers;
    const bytes = (name: string, help: string, pick: 'received' | 'sent') =>
      new Counter({
        name,
        help,
        labelNames: ['api'],
        registers: [registry],
        // Read from the sockets at scrape time: nothing is counted per request.
        collect() {
          this.reset();
          for (const [api, s] of servers) this.inc({ api }, s.traffic()[pick]);
        },
      });
    bytes(
      'pollen_rpc_received_bytes_total',
      'Bytes received on the API port (TLS records included).',
      'received',
    );
    bytes('pollen_rpc_sent_bytes_total', 'Bytes sent on the API port (TLS records included).', 'sent');
  }

  /** The observer an RPC server asks once per route (rpc-server.ts `observe`). */
  observer(api: string): RequestObserver {
    const denied = this.#authFailures.labels({ api, reason: 'unauthenticated' });
    const forbidden = this.#authFailures.labels({ api, reason: 'permission_denied' });
    return (path): AnswerRecorder => {
      const { codes, latency } = this.#route(api, methodOf(path));
      return (code, arrivedAt) => {
        latency.observe((performance.now() - arrivedAt) / 1000);
        const c = Number.isInteger(code) && code >= 0 && code < codes.length ? code : UNKNOWN;
        codes[c] = codes[c]! + 1;
        if (code === UNAUTHENTICATED) denied.inc();
        else if (code === PERMISSION_DENIED) forbidden.inc();
      };
    };
  }

  #route(api: string, method: string): RouteCounts {
    const key = `${api}\u0000${method}`;
    let route = this.#routes.get(key);
    if (!route) {
      const labels = { api, method };
      route = { labels, codes: new Float64Array(CODES.length), latency: this.#latency.labels(labels) };
      this.#routes.set(key, route);
    }
    return route;
  }

  /** Count a refusal at the connection level (rpc-server.ts `onRefused`). */
  refused(api: string, refusal: Pick<PeerRefusal, 'event'>): void {
    this.#authFailures.inc({ api, reason: REFUSAL_REASONS[refusal.event] });
  }

  /** Report the bytes of a server's connections as this API's. */
  watch(api: string, server: Traffic): void {
    this.#servers.set(api, server);
  }
}
