/**
 * The cost of metrics on the SuperLink's hot path: two SuperLink processes (bench/scale-superlink.ts,
 * mutual TLS, SQLite), one with its ops listener (`/metrics`, the RPC, run and transfer metrics on
 * every call) and one without (as `--metrics-address off`), each with N SuperNodes of its own (the
 * same client certificates). Rounds of the scale bench (one 40 KB instruction per node, every
 * reply awaited) run in alternating pairs, the order swapped every pair; during each round on the
 * metrics SuperLink `/metrics` is scraped every `--scrape-ms` (and once at the start), as
 * Prometheus would, so serving scrapes is counted. Figure: the SuperLink process's CPU time in the
 * round (process.cpuUsage), with metrics ÷ without, per pair; the median of pairs against the
 * target (< 1.05).
 *
 *   npm run bench:metrics-cost                 N = 1,000, 5 pairs, a scrape per second
 *   npx tsx bench/metrics-cost.ts --n 200 --pairs 3 --json
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
import { median } from './lib/stats.js';
import { num, table } from './lib/table.js';

const { values: flags } = parseArgs({
  options: {
    n: { type: 'string', default: '1000' },
    pairs: { type: 'string', default: '5' },
    floats: { type: 'string', default: '10000' },
    'scrape-ms': { type: 'string', default: '1000' },
    json: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(
    'usage: tsx bench/metrics-cost.ts [--n 1000] [--pairs 5] [--scrape-ms 1000] [--cpu-prof] [--json]',
  );
  process.exit(0);
}
const N = Number(flags.n);
const PAIRS = Number(flags.pairs);
const FLOATS = Number(flags.floats);
const SCRAPE_MS = Number(flags['scrape-ms']);
const log = (s: string): void => {
  if (!flags.json) console.log(s);
};

const { dir, certs } = await scaleFleet('pollen-bench-metrics-cost-', N);
// --cpu-prof profiles the SuperLink with metrics (bench/out/profiles/).
const withMetrics = await startScaleSuperLink(dir, {
  name: 'with',
  metrics: true,
  cpuProf: flags['cpu-prof'],
});
const without = await startScaleSuperLink(dir, { name: 'without' });
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

/** Scrape `/metrics` now and every `everyMs` until stopped; the count and bytes read. */
function scraper(opsUrl: string, everyMs: number) {
  let scrapes = 0;
  let bytes = 0;
  let inFlight: Promise<void> = Promise.resolve();
  // A scrape that fails (a kept-alive connection the listener just closed) is not counted.
  const once = (): void => {
    inFlight = inFlight.then(async () => {
      const text = await fetch(`${opsUrl}/metrics`).then(
        (r) => r.text(),
        () => undefined,
      );
      if (text === undefined) return;
      scrapes++;
      bytes += text.length;
    });
  };
  once();
  const timer = setInterval(once, everyMs);
  return async () => {
    clearInterval(timer);
    await inFlight;
    return { scrapes, bytes };
  };
}

async function measure(r: Receiver<ScaleLinkReady>): Promise<Measured> {
  const before = await r.ask<ScaleLinkStats>({ cmd: 'stats' });
  const stopScraping = r.ready.opsUrl ? scraper(r.ready.opsUrl, SCRAPE_MS) : undefined;
  const round = await r.ask<ScaleRound>({ cmd: 'round', floats: FLOATS, ttl: 120 });
  const scraped = (await stopScraping?.()) ?? { scrapes: 0, bytes: 0 };
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

// A warm-up round on each (JIT, first-run allocations), not counted.
await measure(withMetrics);
await measure(without);
const pairs: { on: Measured; off: Measured; ratio: number }[] = [];
for (let p = 0; p < PAIRS; p++) {
  // The order alternates, so a drift in the machine's load favours neither side.
  let on: Measured;
  let off: Measured;
  if (p % 2 === 0) {
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
await Promise.all(pools.map((p) => p.close()));
await Promise.all([withMetrics, without].map(stopScaleSuperLink));
rmSync(dir, { recursive: true, force: true });

const ratios = pairs.map((p) => p.ratio);
const result = {
  medianRatio: median(ratios),
  minRatio: Math.min(...ratios),
  maxRatio: Math.max(...ratios),
};
log('');
log(
  table(
    ['pair', 'CPU with metrics', 'CPU without', '÷', 'round with', 'round without', 'scrapes (bytes each)'],
    pairs.map((p, i) => [
      String(i + 1),
      `${num(p.on.cpuMs)} ms`,
      `${num(p.off.cpuMs)} ms`,
      p.ratio.toFixed(3),
      `${num(p.on.roundMs)} ms`,
      `${num(p.off.roundMs)} ms`,
      `${p.on.scrapes} (${num(p.on.scrapeBytes / Math.max(1, p.on.scrapes))})`,
    ]),
  ),
);
log('');
log(
  `SuperLink CPU per ${num(N)}-node round, with metrics ÷ without: median of ${PAIRS} pairs ${result.medianRatio.toFixed(3)} ` +
    `(${result.minRatio.toFixed(3)}–${result.maxRatio.toFixed(3)}); load average ${load.map((l) => l.toFixed(1)).join(' ')}`,
);
log(`target < 1.05: ${result.medianRatio < 1.05 ? 'PASS' : 'FAIL'}`);

const doc = {
  bench: 'metrics-cost',
  machine: machineInfo(),
  config: { n: N, pairs: PAIRS, floats: FLOATS, scrapeMs: SCRAPE_MS },
  loadavg: load,
  pairs,
  ...result,
};
mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'out', 'metrics-cost.json'), `${JSON.stringify(doc, null, 2)}\n`);
if (flags.json) console.log(JSON.stringify(doc, null, 2));
process.exit(0);
