/**
 * The cost of metrics on the SuperLink's hot path: two SuperLink processes (bench/scale-superlink.ts,
 * mutual TLS, SQLite), one with its ops listener (`/metrics`, the RPC, run and transfer metrics on
 * every call) and one without (as `--metrics-address off`), each with N SuperNodes of its own (the
 * same client certificates). Rounds of the scale bench (one 40 KB instruction per node, every
 * reply awaited) run in alternating pairs, the order swapped every pair (`--at-once`: both rounds
 * of a pair at the same time), until `--seconds` of pairs (at least `--min-pairs`, at most
 * `--pairs`). While a round runs on the metrics SuperLink, `/metrics` is scraped every
 * `--scrape-ms` of round time (default 15 s, the scrape_interval of
 * deploy/monitoring/prometheus.yml), the interval's phase carried from round to round, so rounds
 * see scrapes at Prometheus's rate whatever their length. Figure: the SuperLink process's CPU time
 * in the round (process.cpuUsage), with metrics ÷ without, per pair; the median of pairs with its
 * 95% confidence interval against the target (< 1.05). Then the CPU of one scrape alone
 * (back-to-back scrapes less the same time idle) and its share at the interval.
 *
 *   npm run bench:metrics-cost                 N = 1,000, ~100 s of pairs, a scrape per 15 s
 *   npx tsx bench/metrics-cost.ts --n 200 --seconds 60 --scrape-ms 1000 --json
 *   npx tsx bench/metrics-cost.ts --n 300 --at-once    on a busy machine: both rounds of a pair together
 *   npx tsx bench/metrics-cost.ts --cpu-prof   profiles of both SuperLinks in bench/out/profiles/
 *   npx tsx bench/metrics-cost.ts --control    both SuperLinks without metrics (an A/A run): the
 *                                              ratio the bench itself gives two equal sides
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo } from './lib/env.js';
import type { Receiver } from './lib/receiver.js';
import {
  NodePool,
  ROOT,
  type ScaleLinkReady,
  type ScaleLinkStats,
  type ScaleRound,
  scaleFleet,
  startScaleSuperLink,
  stopScaleSuperLink,
} from './lib/scale-fleet.js';
import { median, medianInterval, percentile } from './lib/stats.js';
import { num, table } from './lib/table.js';

const { values: flags } = parseArgs({
  options: {
    n: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '100' },
    'min-pairs': { type: 'string', default: '5' },
    pairs: { type: 'string', default: '40' },
    floats: { type: 'string', default: '10000' },
    'scrape-ms': { type: 'string', default: '15000' },
    'scrape-cost': { type: 'string', default: '30' },
    'at-once': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    control: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(
    'usage: tsx bench/metrics-cost.ts [--n 1000] [--seconds 100] [--min-pairs 5] [--pairs 40] [--scrape-ms 15000] [--scrape-cost 30] [--at-once] [--cpu-prof] [--control] [--json]',
  );
  process.exit(0);
}
const N = Number(flags.n);
const SECONDS = Number(flags.seconds);
const MIN_PAIRS = Number(flags['min-pairs']);
const MAX_PAIRS = Math.max(MIN_PAIRS, Number(flags.pairs));
const FLOATS = Number(flags.floats);
const SCRAPE_MS = Number(flags['scrape-ms']);
const SCRAPE_COST = Number(flags['scrape-cost']);
const TARGET = 1.05;
const log = (s: string): void => {
  if (!flags.json) console.log(s);
};
const t0 = performance.now();

const { dir, certs } = await scaleFleet('pollen-bench-metrics-cost-', N);
// --cpu-prof profiles both SuperLinks (bench/out/profiles/with, …/without).
// --control: the "with" side runs without metrics too, so the ratio is the bench's own bias.
const CONTROL = flags.control;
const withMetrics = await startScaleSuperLink(dir, {
  name: 'with',
  metrics: !CONTROL,
  cpuProf: flags['cpu-prof'],
});
const without = await startScaleSuperLink(dir, { name: 'without', cpuProf: flags['cpu-prof'] });
const pools = [withMetrics, without].map(
  (r, i) => new NodePool(r.ready.fleetUrl, certs, join(dir, `nodes-${i}`)),
);
for (const pool of pools) log(`${num(N)} nodes connected in ${num(await pool.grow(N))} ms`);

interface Measured {
  cpuMs: number;
  roundMs: number;
  replies: number;
  scrapes: number;
  scrapeBytes: number;
}

/** One `/metrics` scrape: the bytes read, undefined when it failed. */
const scrapeOnce = (opsUrl: string): Promise<number | undefined> =>
  fetch(`${opsUrl}/metrics`).then(
    (r) => r.text().then((t) => t.length),
    () => undefined,
  );

/**
 * Scrapes `/metrics` every `everyMs` of the time it is resumed, the phase carried across pauses:
 * a round of any length sees scrapes at the interval's rate, as under Prometheus, and the first
 * resume scrapes at once.
 */
class Scraper {
  #sinceLast: number;
  #resumedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> = Promise.resolve();
  #scrapes = 0;
  #bytes = 0;

  constructor(
    private readonly opsUrl: string,
    private readonly everyMs: number,
  ) {
    this.#sinceLast = everyMs;
  }

  resume(): void {
    this.#resumedAt = performance.now();
    this.#arm();
  }

  /** Stop the clock; the scrapes and bytes since the last resume. */
  async pause(): Promise<{ scrapes: number; bytes: number }> {
    clearTimeout(this.#timer);
    this.#sinceLast += performance.now() - this.#resumedAt;
    await this.#inFlight;
    const done = { scrapes: this.#scrapes, bytes: this.#bytes };
    this.#scrapes = 0;
    this.#bytes = 0;
    return done;
  }

  #arm(): void {
    this.#timer = setTimeout(
      () => {
        this.#sinceLast = 0;
        this.#resumedAt = performance.now();
        // A scrape that fails (a kept-alive connection the listener just closed) is not counted.
        this.#inFlight = this.#inFlight.then(async () => {
          const bytes = await scrapeOnce(this.opsUrl);
          if (bytes === undefined) return;
          this.#scrapes++;
          this.#bytes += bytes;
        });
        this.#arm();
      },
      Math.max(0, this.everyMs - this.#sinceLast),
    );
  }
}

const scraper = withMetrics.ready.opsUrl ? new Scraper(withMetrics.ready.opsUrl, SCRAPE_MS) : undefined;
if (!scraper && !CONTROL) throw new Error('the metrics SuperLink named no ops listener');

async function measure(r: Receiver<ScaleLinkReady>): Promise<Measured> {
  const scraping = r === withMetrics ? scraper : undefined;
  const before = await r.ask<ScaleLinkStats>({ cmd: 'stats' });
  scraping?.resume();
  const round = await r.ask<ScaleRound>({ cmd: 'round', floats: FLOATS, ttl: 120 });
  const scraped = (await scraping?.pause()) ?? { scrapes: 0, bytes: 0 };
  const after = await r.ask<ScaleLinkStats>({ cmd: 'stats' });
  if (round.replies !== N)
    throw new Error(`a round got ${round.replies}/${N} replies: ${round.firstErrors.join(' | ')}`);
  return {
    cpuMs: after.cpuMs - before.cpuMs,
    roundMs: round.roundMs,
    replies: round.replies,
    scrapes: scraped.scrapes,
    scrapeBytes: scraped.bytes,
  };
}

/**
 * The SuperLink CPU of one scrape alone: `count` scrapes back to back, less the CPU of the same
 * time idle (its nodes' heartbeats and polls) measured right after.
 */
async function scrapeCost(
  r: Receiver<ScaleLinkReady>,
  opsUrl: string,
  count: number,
): Promise<{ cpuMs: number; bytes: number }> {
  const cpu = async () => (await r.ask<ScaleLinkStats>({ cmd: 'stats' })).cpuMs;
  const a = await cpu();
  const t = performance.now();
  let bytes = 0;
  for (let i = 0; i < count; i++) bytes += (await scrapeOnce(opsUrl)) ?? 0;
  const busy = (await cpu()) - a;
  const wall = performance.now() - t;
  const b = await cpu();
  await new Promise((done) => setTimeout(done, wall));
  const idle = (await cpu()) - b;
  return { cpuMs: (busy - idle) / count, bytes: bytes / count };
}

// A warm-up round on each (JIT, first-run allocations), not counted.
await measure(withMetrics);
await measure(without);
const pairs: { on: Measured; off: Measured; ratio: number }[] = [];
const pairsFrom = performance.now();
while (
  pairs.length < MIN_PAIRS ||
  (pairs.length < MAX_PAIRS && performance.now() - pairsFrom < SECONDS * 1000)
) {
  const p = pairs.length;
  // The order alternates, so a drift in the machine's load favours neither side; --at-once starts
  // both rounds at the same time (the first asked alternating), so both see the same load.
  let on: Measured;
  let off: Measured;
  if (flags['at-once'] && p % 2 === 0)
    [on, off] = await Promise.all([measure(withMetrics), measure(without)]);
  else if (flags['at-once']) [off, on] = await Promise.all([measure(without), measure(withMetrics)]);
  else if (p % 2 === 0) {
    on = await measure(withMetrics);
    off = await measure(without);
  } else {
    off = await measure(without);
    on = await measure(withMetrics);
  }
  pairs.push({ on, off, ratio: on.cpuMs / off.cpuMs });
  log(
    `pair ${p + 1}: SuperLink CPU ${num(on.cpuMs)} ms with metrics (${on.scrapes} scrapes) · ${num(off.cpuMs)} ms without → ${pairs.at(-1)!.ratio.toFixed(3)}`,
  );
}
const load = loadavg();
const opsUrl = withMetrics.ready.opsUrl;
const scrape = opsUrl ? await scrapeCost(withMetrics, opsUrl, SCRAPE_COST) : { cpuMs: 0, bytes: 0 };
await Promise.all(pools.map((p) => p.close()));
await Promise.all([withMetrics, without].map(stopScaleSuperLink));
rmSync(dir, { recursive: true, force: true });

const ratios = pairs.map((p) => p.ratio);
const sorted = Float64Array.from(ratios).sort();
const sum = (k: 'on' | 'off', f: 'cpuMs' | 'roundMs') => pairs.reduce((s, p) => s + p[k][f], 0);
// The SuperLink's CPU per second of a round with metrics: what a scrape's CPU is a share of.
const cpuPerSecond = sum('on', 'cpuMs') / (sum('on', 'roundMs') / 1000);
const scrapes = pairs.reduce((s, p) => s + p.on.scrapes, 0);
const result = {
  medianRatio: median(ratios),
  ci95: medianInterval(ratios, 0.95),
  quartiles: { q1: percentile(sorted, 25), q3: percentile(sorted, 75) },
  minRatio: sorted[0]!,
  maxRatio: sorted[sorted.length - 1]!,
  totalRatio: sum('on', 'cpuMs') / sum('off', 'cpuMs'),
  scrapes,
  scrapeCpuMs: scrape.cpuMs,
  scrapeBytes: scrape.bytes,
  scrapeShare: scrape.cpuMs / ((SCRAPE_MS / 1000) * cpuPerSecond),
};
const verdict = CONTROL
  ? 'none in a control run (both sides without metrics): read a metrics run against this ratio'
  : result.ci95.high < TARGET
    ? 'PASS'
    : result.ci95.low >= TARGET
      ? 'FAIL'
      : 'NOT SETTLED (the 95% interval spans the target: rerun on a quiet machine or with more --seconds)';
log('');
log(
  table(
    ['pair', 'CPU with metrics', 'CPU without', '÷', 'round with', 'round without', 'scrapes'],
    pairs.map((p, i) => [
      String(i + 1),
      `${num(p.on.cpuMs)} ms`,
      `${num(p.off.cpuMs)} ms`,
      p.ratio.toFixed(3),
      `${num(p.on.roundMs)} ms`,
      `${num(p.off.roundMs)} ms`,
      String(p.on.scrapes),
    ]),
  ),
);
log('');
const f = (x: number) => x.toFixed(3);
log(
  `SuperLink CPU per ${num(N)}-node round, ${CONTROL ? 'control: "with" (no metrics either)' : 'with metrics'} ÷ without, ${pairs.length} pairs: median ${f(result.medianRatio)} ` +
    `(95% interval of the median ${f(result.ci95.low)}–${f(result.ci95.high)}; quartiles ${f(result.quartiles.q1)}–${f(result.quartiles.q3)}; ` +
    `range ${f(result.minRatio)}–${f(result.maxRatio)}); all pairs' CPU ${f(result.totalRatio)}`,
);
log(
  `scrapes: ${scrapes} in the rounds (one per ${num(SCRAPE_MS)} ms of round time); one scrape alone ${result.scrapeCpuMs.toFixed(1)} ms of CPU ` +
    `(${num(result.scrapeBytes)} bytes), ${(100 * result.scrapeShare).toFixed(2)}% of the round's CPU at that interval`,
);
log(
  `load average ${load.map((l) => l.toFixed(1)).join(' ')}; ${num((performance.now() - t0) / 1000)} s in all`,
);
log(`target < ${TARGET}: ${verdict}`);

const doc = {
  bench: 'metrics-cost',
  machine: machineInfo(),
  config: {
    n: N,
    seconds: SECONDS,
    minPairs: MIN_PAIRS,
    maxPairs: MAX_PAIRS,
    floats: FLOATS,
    scrapeMs: SCRAPE_MS,
  },
  loadavg: load,
  pairs,
  ...result,
  verdict: verdict.split(' ')[0],
};
mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'out', 'metrics-cost.json'), `${JSON.stringify(doc, null, 2)}\n`);
if (flags.json) console.log(JSON.stringify(doc, null, 2));
process.exit(0);
