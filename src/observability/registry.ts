/**
 * The registry a component's `/metrics` serves: its own metrics plus Node's process metrics.
 *
 * prom-client's default metrics include three gauges named `…_total`
 * (`nodejs_active_handles_total`, `…_requests_total`, `…_resources_total`), which
 * `promtool check metrics` refuses (only counters end in `_total`). Each is the sum of a labelled
 * sibling that stays (`nodejs_active_handles{type}` …), so they are dropped, not renamed.
 */
import { X509Certificate } from 'node:crypto';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

const NOT_LINT_CLEAN = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** A fresh registry with the process metrics (CPU, memory, event loop, GC) that lint clean. */
export function componentRegistry(component: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  collectDefaultMetrics({ register: registry });
  for (const name of NOT_LINT_CLEAN) registry.removeSingleMetric(name);
  return registry;
}

/** Seconds since the epoch, the unit of every `…_timestamp_seconds` gauge. */
export const epochSeconds = (ms: number): number => ms / 1000;

/**
 * `pollen_certificate_expiry_timestamp_seconds{certificate}`: when each certificate a component
 * holds (or, for the Certificate Service, issued to a site still enrolled) expires. Bounded by
 * the fleet: a gauge, never a counter.
 */
export function certificateExpiryGauge(
  registry: Registry,
  read: () => Iterable<[certificate: string, notAfterMs: number]> | Promise<Iterable<[string, number]>>,
  /** How a worker's values combine in the primary (cluster); the same in every worker: `max`. */
  aggregator: 'max' | 'sum' = 'sum',
): void {
  new Gauge({
    name: 'pollen_certificate_expiry_timestamp_seconds',
    help: 'When a certificate this component holds or issued expires (seconds since the epoch).',
    labelNames: ['certificate'],
    registers: [registry],
    aggregator,
    async collect() {
      this.reset();
      for (const [certificate, notAfter] of await read()) this.set({ certificate }, epochSeconds(notAfter));
    },
  });
}

/** A PEM certificate's notAfter, epoch ms. */
export const notAfterOf = (pem: string): number => Date.parse(new X509Certificate(pem).validTo);
