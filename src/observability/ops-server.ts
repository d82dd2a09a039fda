/**
 * The ops listener of a long-running component: `GET /metrics` (Prometheus text), `GET /healthz`
 * (the process is alive) and `GET /readyz` (every readiness check passes), on an address of its
 * own — loopback by default — never on an API port, so scraping and probing stay off the data
 * path and out of the APIs' authentication.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { listenOn } from '../transport/listen-failure.js';

/** What `/metrics` serves: a prom-client Registry (or AggregatorRegistry) has this shape. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/** A readiness check: resolves when the part is ready, throws (its message is shown) when not. */
export type ReadinessCheck = () => Promise<void> | void;

export interface OpsServerOptions {
  host: string;
  port: number;
  metrics: MetricsSource;
  /** Named checks `/readyz` runs, e.g. `store`, `ca`, `listeners`. */
  checks: Record<string, ReadinessCheck>;
  /** How long one check may take before it counts as failed (default 2 s). */
  checkTimeoutMs?: number;
  /** The flag that sets the address, for a listen failure's hint. */
  option?: string;
  log?: Pick<Logger, 'warn'>;
}

export interface OpsServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface Readiness {
  status: 'ready' | 'not-ready';
  /** `ok`, or why the check failed. */
  checks: Record<string, string>;
  /** The first check that failed. */
  failing?: string;
}

/** Run every check (concurrently, each bounded by the timeout). */
export async function readiness(
  checks: Record<string, ReadinessCheck>,
  timeoutMs = 2000,
): Promise<Readiness> {
  const results = await Promise.all(
    Object.entries(checks).map(async ([name, check]): Promise<[string, string]> => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([check(), late]);
        return [name, 'ok'];
      } catch (e) {
        return [name, `failed: ${(e as Error).message ?? String(e)}`];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  const failing = results.find(([, r]) => r !== 'ok')?.[0];
  return {
    status: failing ? 'not-ready' : 'ready',
    checks: Object.fromEntries(results),
    ...(failing && { failing }),
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

const json = (res: ServerResponse, status: number, body: unknown) =>
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(body)}\n`);

export async function startOpsServer(o: OpsServerOptions): Promise<OpsServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return json(res, 405, { error: 'only GET' });
    }
    if (path === '/healthz') return json(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const r = await readiness(o.checks, o.checkTimeoutMs);
      return json(res, r.status === 'ready' ? 200 : 503, r);
    }
    if (path === '/metrics') return send(res, 200, o.metrics.contentType, await o.metrics.metrics());
    return json(res, 404, { error: 'not found: GET /metrics, /healthz or /readyz' });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: Error) => {
      o.log?.warn({ err: e, url: req.url }, 'the ops listener could not answer');
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  // Probes and scrapes are short: idle connections are not kept for long.
  server.keepAliveTimeout = 5000;
  await listenOn(server, {
    host: o.host,
    port: o.port,
    what: 'the metrics and health listener',
    option: o.option ?? '--metrics-address',
  });
  const port = (server.address() as AddressInfo).port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
