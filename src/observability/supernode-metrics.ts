/**
 * A SuperNode's own metrics, all read at scrape time: whether it is connected, the runs it
 * serves, the GPUs it offers and how many runs hold each (never which run: no run id label), and
 * its certificate's expiry.
 */
import { Gauge, type Registry } from 'prom-client';
import { certificateExpiryGauge } from './registry.js';

export interface SuperNodeReadings {
  connected(): boolean;
  /** Runs with a slot on this node (their ClientApp running or starting). */
  activeRuns(): number;
  /** Each GPU the node offers, by index, and how many runs hold it now. */
  gpus(): ReadonlyMap<number, number>;
  /** Its certificate's notAfter (epoch ms); undefined without TLS. */
  certificateNotAfter?: number;
}

export function superNodeMetrics(registry: Registry, read: SuperNodeReadings): void {
  const registers = [registry];
  new Gauge({
    name: 'pollen_supernode_connected',
    help: '1 while the SuperNode holds a session with the SuperLink, 0 while it reconnects.',
    registers,
    collect() {
      this.set(read.connected() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'pollen_supernode_active_runs',
    help: 'Runs this SuperNode serves now.',
    registers,
    collect() {
      this.set(read.activeRuns());
    },
  });
  new Gauge({
    name: 'pollen_gpus_offered',
    help: 'GPUs this SuperNode offers to runs (--gpus).',
    registers,
    collect() {
      this.set(read.gpus().size);
    },
  });
  new Gauge({
    name: 'pollen_gpu_held_runs',
    help: 'Runs holding each offered GPU now (0: free; above 1 only with --share-gpus).',
    labelNames: ['gpu'],
    registers,
    collect() {
      this.reset();
      for (const [gpu, runs] of read.gpus()) this.set({ gpu: String(gpu) }, runs);
    },
  });
  const notAfter = read.certificateNotAfter;
  if (notAfter !== undefined) certificateExpiryGauge(registry, () => [['supernode', notAfter]]);
}
