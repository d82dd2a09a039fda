/**
 * Scale benchmark: N lightweight SuperNodes against one SuperLink.
 *
 * The SuperLink runs in a child process (bench/scale-superlink.ts: mutual TLS, certificate mode)
 * so its RSS is its own. This process runs N SuperNodes, each with its own client certificate
 * (issued in memory with issueSiteCertificate), its own HTTP/2 + TLS connection, heartbeats and
 * long polls, and an embedded ClientApp (startSuperNode's `app` option: no child process) that
 * answers a `train` instruction with the model it got. N grows 100 → 250 → 500 → 1,000 → 2,000
 * (the nodes of a step stay for the next); per step:
 *
 *   connect   time for the step's new nodes to be activated (all of them `ready`)
 *   round     the SuperLink pushes one instruction per online node (a 10k-float32 model, 40 KB)
 *             on its Link and waits for every reply (nodes long-poll: PullMessages waits up to
 *             20 s and is answered as soon as the instruction is queued)
 *   memory    SuperLink VmRSS before any node and after the round → KiB per node
 *
 * Baseline in the same run: the round on one node (the fixed cost of a round: wake-up,
 * SQLite commits). Ratio = round(N) ÷ round(1).
 *
 *   npm run bench:scale                       N = 100, 250, 500, 1000, 2000 (stops past 5 s)
 *   npx tsx bench/scale.ts --n 100,500 --json
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo } from './lib/env.js';
import {
  NodePool,
  ROOT,
  type ScaleLinkStats,
  type ScaleRound,
  scaleFleet,
  startScaleSuperLink,
  stopScaleSuperLink,
} from './lib/scale-fleet.js';
import { num, table, times } from './lib/table.js';

const { values: flags } = parseArgs({
  options: {
    n: { type: 'string', default: '100,250,500,1000,2000' },
    floats: { type: 'string', default: '10000' },
    'round-limit-ms': { type: 'string', default: '5000' },
    'budget-s': { type: 'string', default: '170' },
    json: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log('usage: tsx bench/scale.ts [--n 100,250,500,1000,2000] [--floats 10000] [--json]');
  process.exit(0);
}
const STEPS = flags.n.split(',').map(Number);
const FLOATS = Number(flags.floats);
const ROUND_LIMIT_MS = Number(flags['round-limit-ms']);
const started = Date.now();
const BUDGET_MS = Number(flags['budget-s']) * 1000;
const log = (s: string): void => {
  if (!flags.json) console.log(s);
};

// ------------------------------------------------------------------------------ certificates
const maxN = Math.max(...STEPS);
const { dir, certs, certMs } = await scaleFleet('pollen-bench-scale-', maxN);
log(`${num(maxN)} client certificates (P-256 key + issueSiteCertificate) in ${num(certMs)} ms`);

// ------------------------------------------------------------------------------ the SuperLink
const receiver = await startScaleSuperLink(dir, { cpuProf: flags['cpu-prof'] });
const { ask } = receiver;
type Stats = ScaleLinkStats;
type Round = ScaleRound;
const idle = await ask<Stats>({ cmd: 'stats' });

// ------------------------------------------------------------------------------ the nodes
const pool = new NodePool(receiver.ready.fleetUrl, certs, join(dir, 'nodes'));
const nodes = pool.nodes;
const grow = (to: number): Promise<number> => pool.grow(to);

interface Step {
  n: number;
  connectMs: number;
  connectPerS: number;
  round: Round;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  kibPerNode: number;
  cpuMsRound: number;
  benchRssKiB: number;
}

// Baseline: a round with one node.
await grow(1);
const base = await ask<Round>({ cmd: 'round', floats: FLOATS, ttl: 60 });
const steps: Step[] = [];
for (const n of STEPS) {
  if (Date.now() - started > BUDGET_MS) {
    log(`(time budget spent: stopping before N = ${n})`);
    break;
  }
  const added = n - nodes.length;
  const connectMs = await grow(n);
  const before = await ask<Stats>({ cmd: 'stats' });
  const round = await ask<Round>({ cmd: 'round', floats: FLOATS, ttl: 60 });
  const after = await ask<Stats>({ cmd: 'stats' });
  const step: Step = {
    n,
    connectMs,
    connectPerS: added / (connectMs / 1000),
    round,
    rssBeforeKiB: before.rssKiB,
    rssAfterKiB: after.rssKiB,
    kibPerNode: (after.rssKiB - idle.rssKiB) / n,
    cpuMsRound: after.cpuMs - before.cpuMs,
    benchRssKiB: Math.round(process.memoryUsage().rss / 1024),
  };
  steps.push(step);
  log(
    `N=${n}: ${added} connected in ${num(connectMs)} ms, online ${before.online}; round ${num(round.roundMs)} ms ` +
      `(${round.replies} replies, ${round.errors} errors, ${round.missing} missing); SuperLink RSS ${num(after.rssKiB / 1024)} MiB`,
  );
  if (round.firstErrors.length) log(`  errors: ${round.firstErrors.join(' | ')}`);
  if (round.roundMs > ROUND_LIMIT_MS || round.missing > 0) break;
}

// ------------------------------------------------------------------------------ report
const closeMs = await pool.close();
await stopScaleSuperLink(receiver);
rmSync(dir, { recursive: true, force: true });

log('');
log(
  table(
    [
      'N',
      'connect',
      'conn/s',
      'round',
      '÷ 1 node',
      'replies',
      'SL RSS before',
      'SL RSS after',
      'KiB/node',
      'SL CPU/round',
    ],
    [
      [
        '1 (baseline)',
        '–',
        '–',
        `${num(base.roundMs)} ms`,
        times(1),
        `${base.replies}/${base.nodes}`,
        '–',
        '–',
        '–',
        '–',
      ],
      ...steps.map((s) => [
        num(s.n),
        `${num(s.connectMs)} ms`,
        num(s.connectPerS),
        `${num(s.round.roundMs)} ms`,
        times(s.round.roundMs / base.roundMs),
        `${s.round.replies}/${s.round.nodes}`,
        `${num(s.rssBeforeKiB / 1024)} MiB`,
        `${num(s.rssAfterKiB / 1024)} MiB`,
        num(s.kibPerNode),
        `${num(s.cpuMsRound)} ms`,
      ]),
    ],
  ),
);
const ok = steps.filter((s) => s.round.roundMs < ROUND_LIMIT_MS && s.round.replies === s.n);
const largest = ok.length ? Math.max(...ok.map((s) => s.n)) : 0;
log('');
log(`SuperLink idle RSS (no nodes): ${num(idle.rssKiB / 1024)} MiB; nodes closed in ${num(closeMs)} ms`);
log(`largest N with a full round under ${ROUND_LIMIT_MS / 1000} s: ${num(largest)}`);
log(`target ≥ 1,000: ${largest >= 1000 ? 'PASS' : 'FAIL'}`);

const doc = {
  bench: 'scale',
  machine: machineInfo(),
  config: {
    steps: STEPS,
    floats: FLOATS,
    roundLimitMs: ROUND_LIMIT_MS,
    pollWaitMs: 20_000,
    heartbeatMs: 10_000,
  },
  certMs,
  idle,
  baseline: base,
  steps,
  largest,
};
mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'out', 'scale.json'), `${JSON.stringify(doc, null, 2)}\n`);
if (flags.json) console.log(JSON.stringify(doc, null, 2));
process.exit(0);
