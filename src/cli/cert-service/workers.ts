import cluster from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { CertServiceConfig } from '../../enrollment/service/server.js';
import { PollenError } from '../../errors.js';
import { startOpsServer } from '../../observability/ops-server.js';
import { untilSignal } from '../command.js';
import { bold, dim, type Output } from '../output.js';

/**
 * Several processes serve one port (node:cluster hands each connection to one of them); they
 * share the store. The primary prepares the store and certificate once, starts the workers,
 * restarts one that dies, and stops them all on a signal.
 */
export async function runWorkers(
  config: CertServiceConfig,
  n: number,
  out: Output,
  prepare: (c: CertServiceConfig) => Promise<void>,
): Promise<void> {
  await prepare({ ...config, logger: false, metrics: undefined });
  let stopping = false;
  const ready = new Map<number, { url: string; port: number }>();
  const fork = () => cluster.fork({ POLLEN_CERT_SERVICE_WORKER: '1' });
  await new Promise<void>((res, rej) => {
    cluster.on('message', (worker, msg: { type?: string; url: string; port: number }) => {
      if (msg?.type !== 'ready') return;
      ready.set(worker.id, msg);
      if (ready.size === n) res();
    });
    cluster.on('exit', (worker, code) => {
      ready.delete(worker.id);
      if (stopping) return;
      if (ready.size < n && [...Object.values(cluster.workers ?? {})].length === 0 && code !== 0)
        rej(new PollenError('UNAVAILABLE', `A Certificate Service worker exited (${code}) while starting`));
      out.warn(`worker ${worker.id} exited (${code}); starting another`);
      setTimeout(fork, 1000).unref();
    });
    for (let i = 0; i < n; i++) fork();
  });
  const first = [...ready.values()][0]!;
  const workerMetrics = new AggregatorRegistry();
  const ops =
    typeof config.metrics === 'object'
      ? await startOpsServer({
          ...config.metrics,
          // Each worker's registry, summed (counters) or combined as each metric says (aggregator).
          metrics: { contentType: workerMetrics.contentType, metrics: () => workerMetrics.clusterMetrics() },
          ...(config.logger && { log: config.logger }),
          checks: {
            workers: () => {
              if (stopping) throw new Error('the Certificate Service is stopping');
              if (ready.size < n) throw new Error(`${ready.size} of ${n} workers are ready`);
            },
          },
        })
      : undefined;
  out.result({ url: first.url, port: first.port, workers: n, metrics: ops?.url ?? null }, (d) => [
    `${bold('Certificate Service')} listening on ${d.url} with ${d.workers} worker processes`,
    `  metrics/health    ${d.metrics ?? 'off'}`,
    dim('  Ctrl-C to stop'),
  ]);
  await untilSignal(async () => {
    stopping = true;
    out.progress('stopping the Certificate Service workers');
    const all = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
    await Promise.all(
      all.map((w) => {
        if (w.isDead()) return Promise.resolve();
        const exited = new Promise<void>((res) => w.once('exit', () => res()));
        w.process.kill('SIGTERM');
        return exited;
      }),
    );
    await ops?.close();
  });
}
