/**
 * Time per round of every strategy's aggregation step (`aggregateTrain`: checks, NaN/Inf scan,
 * the aggregate, the metrics) for K ∈ {10, 100} replies of P ∈ {1M, 10M} float32 parameters,
 * beside FedAvg in the same run, and the cost per node and parameter (ns).
 *
 *   npm run bench:strategies                 about 2 minutes
 *   npm run bench:strategies -- --quick      about 30 s (shorter timing budget per row)
 *   … --json                                 one JSON document on stdout (also bench/out/strategies.json)
 *   … --memory kernel|shared|ordinary        where the replies' arrays lie (default kernel: where a
 *                                            ServerApp's Strategy.start receives them for Pollen's
 *                                            strategies; shared: a grid's replies otherwise)
 *   … --only FedAvg,FedMedian                these strategies only
 *
 * Bounded: the updates held at once are at most 400 MB (K · P′ · 4 bytes), and each row runs
 * about `--seconds`. Every strategy's cost is linear in P, so a row whose full size would exceed
 * either bound is measured on the first P′ parameters and scaled by P / P′ (marked "scaled").
 * Not part of the test suite.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict } from '../src/sdk/index.js';
import {
  Bulyan,
  FedAdagrad,
  FedAdam,
  type FedAvg,
  FedAvgM,
  FedAvg as FedAvgStrategy,
  FedMedian,
  FedProx,
  FedTrimmedAvg,
  FedYogi,
  Krum,
  MultiKrum,
  QFedAvg,
} from '../src/strategies/index.js';
import { allocKernelFloat32 } from '../src/strategies/kernel-memory.js';
import { closeKernelWorkers } from '../src/strategies/kernel-workers.js';
import { machineInfo } from './lib/env.js';
import { median } from './lib/stats.js';
import { num, table, times } from './lib/table.js';
import { timeIt } from './lib/timing.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MAX_BYTES = 400e6;
/** The smallest slice timed (when P is larger). */
const FLOOR = 1 << 16;

const STRATEGIES: { name: string; make: (K: number) => FedAvg }[] = [
  { name: 'FedAvg', make: () => new FedAvgStrategy() },
  { name: 'FedProx', make: () => new FedProx({ proximalMu: 0.1 }) },
  { name: 'FedAvgM', make: () => new FedAvgM({ serverMomentum: 0.9 }) },
  { name: 'FedAdam', make: () => new FedAdam() },
  { name: 'FedYogi', make: () => new FedYogi() },
  { name: 'FedAdagrad', make: () => new FedAdagrad() },
  { name: 'QFedAvg', make: () => new QFedAvg({ clientLearningRate: 0.1 }) },
  { name: 'FedMedian', make: () => new FedMedian() },
  { name: 'FedTrimmedAvg (β 0.2)', make: () => new FedTrimmedAvg({ beta: 0.2 }) },
  { name: 'Krum (f = ⌊(K−3)/2⌋)', make: (K) => new Krum({ numMaliciousNodes: Math.floor((K - 3) / 2) }) },
  {
    name: 'MultiKrum (f as Krum, keep K/2)',
    make: (K) => new MultiKrum({ numMaliciousNodes: Math.floor((K - 3) / 2), numNodesToSelect: K / 2 }),
  },
  { name: 'Bulyan (f = ⌊(K−3)/4⌋)', make: (K) => new Bulyan({ numMaliciousNodes: Math.floor((K - 3) / 4) }) },
];

/** K replies of one float32 array "w" of P values (views of `pool`), and the global arrays. */
function round(K: number, P: number, pool: Float32Array) {
  const nodes = Array.from({ length: K }, (_, k) => `n${k}`);
  const replies = nodes.map((nodeId, k) => {
    const data = pool.subarray(k * P, (k + 1) * P);
    const arrays = new ArrayRecord().set('w', { dtype: 'float32', shape: [P], data });
    const metrics = new MetricRecord({ 'num-examples': 100 + k, train_loss: 0.5 + k / K });
    return Message.create({ dstNodeId: nodeId, messageType: 'train', content: new RecordDict() }).createReply(
      new RecordDict({ arrays, metrics }),
    );
  });
  const current = new ArrayRecord().set('w', { dtype: 'float32', shape: [P], data: new Float32Array(P) });
  return { nodes, replies, current };
}

/** Seconds of one aggregation step of `make()` on K replies of P values (median of a few). */
function measure(make: () => FedAvg, K: number, P: number, pool: Float32Array, seconds: number): number {
  const { nodes, replies, current } = round(K, P, pool);
  const strategy = make();
  strategy.configureTrain(1, current, new ConfigRecord(), nodes); // the FedOpt family needs the global arrays
  return median(timeIt(() => strategy.aggregateTrain(1, replies), seconds, 5));
}

interface Row {
  strategy: string;
  K: number;
  P: number;
  measuredP: number;
  secondsPerRound: number;
  nsPerNodeParameter: number;
  overFedAvg: number;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      seconds: { type: 'string' },
      json: { type: 'boolean', default: false },
      memory: { type: 'string', default: 'kernel' },
      only: { type: 'string' },
    },
  });
  const only = values.only?.split(',').map((x) => x.trim());
  const strategies = STRATEGIES.filter(
    (x) => only === undefined || only.includes(x.name.split(' ')[0] as string),
  );
  if (!strategies.some((x) => x.name === 'FedAvg'))
    strategies.unshift(STRATEGIES[0] as (typeof STRATEGIES)[0]);
  const memory = values.memory;
  const n = MAX_BYTES / 4;
  const pool =
    memory === 'kernel'
      ? allocKernelFloat32(n)
      : memory === 'shared'
        ? new Float32Array(new SharedArrayBuffer(n * 4))
        : memory === 'ordinary'
          ? new Float32Array(n)
          : null;
  if (pool === null)
    throw new Error(
      `--memory ${memory}: kernel (if the kernel's memory can hold 400 MB), shared or ordinary`,
    );
  const seconds = Number(values.seconds ?? (values.quick ? 0.3 : 1));
  const log = values.json ? () => {} : (s: string) => console.log(s);
  const machine = machineInfo();
  log(
    `Strategies, one aggregation step — ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}, load ${machine.loadAverage1m}; replies in ${memory} memory`,
  );
  let s = 12345;
  for (let i = 0; i < pool.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    pool[i] = s / 4294967296 - 0.5;
  }
  const rows: Row[] = [];
  for (const K of [10, 100])
    for (const P of [1_000_000, 10_000_000]) {
      let fedavg = Number.NaN;
      for (const { name, make } of strategies) {
        // A short probe on a slice gives the cost per parameter; the timed size fits the budget
        // but is never below FLOOR (the smallest layer the averaging kernel takes, as in a real model).
        const probeP = Math.min(P, 20_000);
        const probe = measure(() => make(K), K, probeP, pool, 0) / probeP;
        const measuredP = Math.min(
          P,
          Math.floor(MAX_BYTES / 4 / K),
          Math.max(FLOOR, Math.floor(seconds / 3 / probe)),
        );
        // The same measured size as a smaller P of this K: scale that one instead of timing again.
        const earlier = rows.find((r) => r.strategy === name && r.K === K && r.measuredP === measuredP);
        const timed =
          earlier !== undefined
            ? (earlier.secondsPerRound * earlier.measuredP) / earlier.P
            : measure(() => make(K), K, measuredP, pool, seconds);
        const perRound = (timed * P) / measuredP;
        if (name === 'FedAvg') fedavg = perRound;
        rows.push({
          strategy: name,
          K,
          P,
          measuredP,
          secondsPerRound: perRound,
          nsPerNodeParameter: (perRound / (K * P)) * 1e9,
          overFedAvg: perRound / fedavg,
        });
      }
      const these = rows.filter((r) => r.K === K && r.P === P);
      log(`\nK = ${K} replies × P = ${num(P)} float32`);
      log(
        table(
          ['strategy', 'per round', 'ns / node·param', '÷ FedAvg', 'measured on'],
          these.map((r) => [
            r.strategy,
            `${num(r.secondsPerRound * 1000, 1)} ms`,
            num(r.nsPerNodeParameter, 2),
            times(r.overFedAvg),
            r.measuredP === P ? 'all' : `${num(r.measuredP)} (scaled)`,
          ]),
        ),
      );
    }
  const doc = { bench: 'strategies', machine, memory, seconds, rows };
  mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'out', 'strategies.json'), `${JSON.stringify(doc, null, 2)}\n`);
  if (values.json) console.log(JSON.stringify(doc));
}

main();
await closeKernelWorkers();
