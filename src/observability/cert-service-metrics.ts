/**
 * The Certificate Service's metrics: requests by route and status with their latency,
 * enrollments by outcome, enrollment-token uses, authentication failures by reason (the error
 * code: a fixed catalogue), pending requests, and the expiry of every certificate it holds or
 * issued to a participant still enrolled (bounded by the federation: a gauge).
 *
 * With several worker processes each counts its own requests and the primary serves the sum
 * (prom-client's AggregatorRegistry); gauges read from the shared store are the same in every
 * worker, so they are aggregated with `max`, not summed.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { certificateExpiryGauge } from './registry.js';

export interface CertServiceReadings {
  pendingRequests(): Promise<number>;
  /** Each certificate held or issued and still valid: a name and its notAfter (epoch ms). */
  certificates(): Promise<Iterable<[string, number]>>;
}

export interface CertServiceMetricsOptions {
  /** The error code an answer carried, where it was an error (the app's error handler knows it). */
  errorCode(reply: FastifyReply): string | undefined;
}

const ENROLL_ROUTE = '/v1/enroll';

/** Count and time every request of `app`, and register the service's gauges. */
export function observeCertService(
  app: FastifyInstance,
  registry: Registry,
  read: CertServiceReadings,
  o: CertServiceMetricsOptions,
): void {
  const registers = [registry];
  const requests = new Counter({
    name: 'pollen_http_requests_total',
    help: 'HTTP requests answered, by route, method and status code.',
    labelNames: ['route', 'method', 'code'],
    registers,
  });
  const latency = new Histogram({
    name: 'pollen_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by route and method.',
    labelNames: ['route', 'method'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers,
  });
  const enrollments = new Counter({
    name: 'pollen_enrollments_total',
    help: 'Enrollment requests (POST /v1/enroll) by outcome: issued, pending (waiting for approval) or refused.',
    labelNames: ['outcome'],
    registers,
  });
  const tokenUses = new Counter({
    name: 'pollen_enrollment_token_uses_total',
    help: 'Enrollment tokens presented, by result: accepted (a certificate or a pending request) or refused.',
    labelNames: ['result'],
    registers,
  });
  const authFailures = new Counter({
    name: 'pollen_auth_failures_total',
    help: 'Callers refused for their credentials (401/403) or their enrollment token, by API and reason (the error code).',
    labelNames: ['api', 'reason'],
    registers,
  });
  // Each from zero, so `rate()` and `increase()` see the first one.
  for (const outcome of ['issued', 'pending', 'refused']) enrollments.inc({ outcome }, 0);
  for (const result of ['accepted', 'refused']) tokenUses.inc({ result }, 0);
  new Gauge({
    name: 'pollen_enrollment_pending_requests',
    help: 'Enrollment requests waiting for an admin’s decision.',
    registers,
    aggregator: 'max',
    async collect() {
      this.set(await read.pendingRequests());
    },
  });
  certificateExpiryGauge(registry, () => read.certificates(), 'max');

  const started = new WeakMap<FastifyRequest, number>();
  app.addHook('onRequest', async (req) => {
    started.set(req, performance.now());
  });
  app.addHook('onResponse', async (req, reply) => {
    // The route's pattern (`/v1/requests/:id/status`), never the URL: label values stay bounded.
    const route = req.routeOptions.url ?? 'unmatched';
    const method = req.method;
    const status = reply.statusCode;
    requests.inc({ route, method, code: String(status) });
    const start = started.get(req);
    if (start !== undefined) latency.observe({ route, method }, (performance.now() - start) / 1000);
    const code = status >= 400 ? o.errorCode(reply) : undefined;
    // Refused credentials, and tokens refused for what they are (used up, expired, forged).
    if (code && (status === 401 || status === 403 || code.startsWith('TOKEN_')))
      authFailures.inc({ api: 'cert-service', reason: code.toLowerCase() });
    if (route !== ENROLL_ROUTE || method !== 'POST') return;
    enrollments.inc({ outcome: status === 200 ? 'issued' : status === 202 ? 'pending' : 'refused' });
    if (status < 300) tokenUses.inc({ result: 'accepted' });
    else if (status < 500) tokenUses.inc({ result: 'refused' });
  });
}
