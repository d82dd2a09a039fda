/**
 * The SuperLink's own metrics. Gauges are computed at scrape time from what the SuperLink holds
 * (nodes, runs, queues, chunk memory, its certificate, the CRL); counters and histograms are
 * told of rounds and finished runs as they happen. No run id or node id is ever a label.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { certificateExpiryGauge } from './registry.js';

/** What the SuperLink's gauges read; each call is cheap (memory, or one grouped query). */
export interface SuperLinkReadings {
  /** Every known node: its status and the federations it serves. */
  nodes(): Iterable<{ status: string; federations: readonly string[] }>;
  /** Runs by state (`pending`, `starting`, `running`, `completed`, `failed`, `stopped`). */
  runsByState(): Promise<Record<string, number>>;
  /** Instructions queued for nodes and replies waiting for ServerApps. */
  queueDepth(): { instructions: number; replies: number };
  /** Bytes of run chunks held in memory, and the budget. */
  chunkMemory(): { used: number; limit: number };
  /** Bytes of chunk files on disk, and the budget. */
  chunkDisk(): { used: number; limit: number };
  /** Its own certificate's notAfter (epoch ms); undefined without TLS. */
  certificateNotAfter?: number;
  /** The CRL held: its thisUpdate (epoch ms) and entries; undefined without one. */
  crl(): { thisUpdate: number; entries: number } | undefined;
}

/** Every status a node can have (node-registry.ts): each is reported for `default`, 0 included. */
const NODE_STATUSES = ['online', 'offline', 'registered', 'unregistered'] as const;
const RUN_STATES = ['pending', 'starting', 'running', 'completed', 'failed', 'stopped'] as const;

export class SuperLinkMetrics {
  readonly #roundSeconds: Histogram;
  readonly #participants: Histogram;
  readonly #finished: Counter<'outcome'>;

  constructor(registry: Registry, read: SuperLinkReadings, now: () => number = Date.now) {
    const registers = [registry];
    new Gauge({
      name: 'pollen_nodes',
      help: 'SuperNodes by status (online, offline, registered, unregistered) and federation they serve.',
      labelNames: ['status', 'federation'],
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, { status: string; federation: string; n: number }>();
        // Zeros too, so an alert on a status has a series before the first node has that status.
        for (const status of NODE_STATUSES)
          counts.set(`${status}\u0000default`, { status, federation: 'default', n: 0 });
        for (const node of read.nodes())
          for (const federation of node.federations) {
            const key = `${node.status}\u0000${federation}`;
            const c = counts.get(key) ?? { status: node.status, federation, n: 0 };
            c.n++;
            counts.set(key, c);
          }
        for (const c of counts.values()) this.set({ status: c.status, federation: c.federation }, c.n);
      },
    });
    new Gauge({
      name: 'pollen_runs',
      help: 'Runs by state (finished runs by outcome: completed, failed, stopped).',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = await read.runsByState();
        for (const state of RUN_STATES) this.set({ state }, counts[state] ?? 0);
      },
    });
    new Gauge({
      name: 'pollen_message_queue_depth',
      help: 'Messages waiting: instructions queued for nodes, replies queued for ServerApps.',
      labelNames: ['queue'],
      registers,
      collect() {
        const d = read.queueDepth();
        this.set({ queue: 'instructions' }, d.instructions);
        this.set({ queue: 'replies' }, d.replies);
      },
    });
    const budget = (name: string, help: string, pick: () => { used: number; limit: number }) => {
      new Gauge({
        name: `${name}_bytes`,
        help,
        registers,
        collect() {
          this.set(pick().used);
        },
      });
      new Gauge({
        name: `${name}_limit_bytes`,
        help: `The budget of ${name}_bytes.`,
        registers,
        collect() {
          this.set(pick().limit);
        },
      });
    };
    budget('pollen_chunk_memory_used', 'Bytes of run chunks held in memory (--chunk-memory).', () =>
      read.chunkMemory(),
    );
    budget('pollen_chunk_disk_used', 'Bytes of chunk files on disk (--chunk-disk-budget).', () =>
      read.chunkDisk(),
    );
    const notAfter = read.certificateNotAfter;
    if (notAfter !== undefined) certificateExpiryGauge(registry, () => [['superlink', notAfter]]);
    new Gauge({
      name: 'pollen_crl_age_seconds',
      help: 'Age of the revocation list the SuperLink enforces (since its thisUpdate); absent without one.',
      registers,
      collect() {
        this.reset();
        const crl = read.crl();
        if (crl) this.set(Math.max(0, (now() - crl.thisUpdate) / 1000));
      },
    });
    new Gauge({
      name: 'pollen_crl_revoked_certificates',
      help: 'Serials on the revocation list the SuperLink enforces.',
      registers,
      collect() {
        this.reset();
        const crl = read.crl();
        if (crl) this.set(crl.entries);
      },
    });
    this.#roundSeconds = new Histogram({
      name: 'pollen_round_duration_seconds',
      help: 'Time between a run’s round reports (the first from the run starting).',
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
      registers,
    });
    this.#participants = new Histogram({
      name: 'pollen_round_participants',
      help: 'Nodes whose replies a round aggregated.',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000],
      registers,
    });
    this.#finished = new Counter({
      name: 'pollen_runs_finished_total',
      help: 'Runs finished, by outcome (completed, failed, stopped).',
      labelNames: ['outcome'],
      registers,
    });
    // Each outcome from zero, so `increase()` sees the first failed run.
    for (const outcome of ['completed', 'failed', 'stopped']) this.#finished.inc({ outcome }, 0);
  }

  /** A round was reported: it took `seconds` and aggregated the replies of `participants` nodes. */
  round(seconds: number, participants: number): void {
    this.#roundSeconds.observe(Math.max(0, seconds));
    this.#participants.observe(participants);
  }

  runFinished(outcome: string): void {
    this.#finished.inc({ outcome });
  }
}
