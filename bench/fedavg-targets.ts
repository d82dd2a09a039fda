/**
 * The two FedAvg speed targets, head to head: Pollen and numpy measured in alternating pairs in
 * one sitting, so the machine's drift (other tenants, turbo, page placement) falls on both sides
 * of each pair alike. bench/fedavg.ts times every row once, numpy's processes first and Pollen
 * after, and on a shared machine one side of a ratio can be measured in a slower minute than the
 * other; here the ratio is taken per pair and the median of the pairs is quoted with its 95%
 * confidence interval.
 *
 * For each size, a numpy process (Debian's python3, bench/python/fedavg_numpy.py --serve, run
 * with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset and 2 OpenBLAS threads) keeps its K × P
 * float32 updates and answers "run METHOD N times". Each pair, the order swapped every pair:
 *   target 1: Pollen `weightedAverage` on 1 thread (float32, updates read in place from the
 *             kernel's memory) ÷ numpy ufuncs with `out=` (1 thread), target ≥ 1.5;
 *   target 2: Pollen on 2 threads ÷ numpy `wn @ X` on OpenBLAS (2 threads), target ≥ 1.
 * A sample is the median of enough back-to-back aggregations to last ~0.2 s; a pause of 0.15 s
 * before each sample lets OpenBLAS's threads stop spinning.
 *
 *   npx tsx bench/fedavg-targets.ts                       the three sizes, ~60 s of pairs each
 *   npx tsx bench/fedavg-targets.ts --sizes 100x1000000 --seconds 120 --json
 *
 * PASS needs the median at the target; the interval says how firmly. Never changes the exit code.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { weightedAverage } from '../src/strategies/aggregate.js';
import { allocKernelFloat32 } from '../src/strategies/kernel-memory.js';
import { closeKernelWorkers } from '../src/strategies/kernel-workers.js';
import { machineInfo } from './lib/env.js';
import { kernelUpdates, pageInfo, parseSizes } from './lib/fedavg-data.js';
import { median, medianInterval, percentile, round } from './lib/stats.js';
import { num, table, times } from './lib/table.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NUMPY = join(ROOT, 'bench', 'python', 'fedavg_numpy.py');

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10x25000000,10x10000000,100x1000000' },
    seconds: { type: 'string', default: '60' },
    'min-pairs': { type: 'string', default: '9' },
    pairs: { type: 'string', default: '200' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(
    'usage: tsx bench/fedavg-targets.ts [--sizes KxP,…] [--seconds 60] [--min-pairs 9] [--pairs 200] [--json]',
  );
  process.exit(0);
}
const SECONDS = Number(flags.seconds);
const MIN_PAIRS = Number(flags['min-pairs']);
const MAX_PAIRS = Math.max(MIN_PAIRS, Number(flags.pairs));
const SAMPLE_S = 0.2;
const PAUSE_MS = 150;
const log = flags.json ? () => {} : (s: string) => console.log(s);

/** A numpy process holding one size's updates, asked to time N runs of a method at a time. */
class NumpyServer {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  private stderr = '';

  constructor(K: number, P: number) {
    const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: '2' };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    this.child = spawn('/usr/bin/python3', [NUMPY, String(K), String(P), '--serve'], { env });
    this.child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    // No /usr/bin/python3: the stream ends and next() says why.
    this.child.on('error', (e) => {
      this.stderr += `${e.message} (install python3-numpy from scripts/system-deps.txt)\n`;
    });
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  async next<T>(): Promise<T> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`numpy ended: ${this.stderr.trim().split('\n').at(-1) ?? ''}`);
    return JSON.parse(r.value) as T;
  }

  /** Seconds of each of n back-to-back runs. */
  async time(method: 'ufunc' | 'blas', n: number): Promise<number[]> {
    this.child.stdin.write(`${method} ${n}\n`);
    return this.next<number[]>();
  }

  close(): void {
    this.child.stdin.end();
  }
}

interface Side {
  /** GB/s of each sample (median of its runs). */
  gbps: number[];
  reps: number;
}

interface Target {
  name: string;
  goal: number;
  threads: number;
  method: 'ufunc' | 'blas';
  pollen: Side;
  numpy: Side;
  /** Pollen ÷ numpy, one per pair. */
  ratios: number[];
}

function timeRuns(fn: () => void, n: number): number[] {
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    fn();
    ts.push((performance.now() - t) / 1000);
  }
  return ts;
}

/** Runs for one sample: enough to last about SAMPLE_S, at least 3. */
const repsFor = (seconds: number) => Math.max(3, Math.min(50, Math.ceil(SAMPLE_S / seconds)));

async function runSize(K: number, P: number, pool: Float32Array) {
  const bytes = K * P * 4;
  const np = new NumpyServer(K, P);
  const hello = await np.next<{ numpy: string; openblas: { core: string; threads: number } }>();

  const { updates, weights, out, input } = kernelUpdates(pool, K, P);
  const pollen = (threads: number) => () => weightedAverage(input, [out], { threads, precision: 'float32' });

  // Checks: 2 threads give 1 thread's bits; 1 thread is within float32 rounding of a float64 sum.
  pollen(1)();
  const one = out.slice();
  pollen(2)();
  if (!Buffer.from(out.buffer, out.byteOffset, out.byteLength).equals(Buffer.from(one.buffer)))
    throw new Error('2 threads differ from 1 thread');
  for (let i = 0; i < P; i += Math.max(1, Math.floor(P / 10_007))) {
    let r = 0;
    for (let k = 0; k < K; k++) r += (weights[k] as number) * ((updates[k] as Float32Array)[i] as number);
    if (!(Math.abs(r - (one[i] as number)) < 1e-5)) throw new Error(`wrong answer at ${i}`);
  }

  // Each target: warm-up runs, which also set how many runs make a sample of each side.
  const target = async (name: string, goal: number, threads: number, method: 'ufunc' | 'blas') => ({
    name,
    goal,
    threads,
    method,
    pollen: { gbps: [] as number[], reps: repsFor(median(timeRuns(pollen(threads), 3))) },
    numpy: { gbps: [] as number[], reps: repsFor(median(await np.time(method, 3))) },
    ratios: [] as number[],
  });
  const targets: Target[] = [
    await target('1 thread ÷ numpy ufuncs out=', 1.5, 1, 'ufunc'),
    await target('2 threads ÷ numpy OpenBLAS', 1, 2, 'blas'),
  ];
  const gbps = (ts: number[]) => bytes / median(ts) / 1e9;

  const from = performance.now();
  for (let p = 0; ; p++) {
    if (p >= MAX_PAIRS || (p >= MIN_PAIRS && performance.now() - from > SECONDS * 1000)) break;
    for (const t of targets) {
      const runPollen = async () => {
        await sleep(PAUSE_MS);
        return gbps(timeRuns(pollen(t.threads), t.pollen.reps));
      };
      const runNumpy = async () => {
        await sleep(PAUSE_MS);
        return gbps(await np.time(t.method, t.numpy.reps));
      };
      // The order swapped every pair, so neither side always runs first.
      let a: number;
      let b: number;
      if (p % 2 === 0) {
        a = await runPollen();
        b = await runNumpy();
      } else {
        b = await runNumpy();
        a = await runPollen();
      }
      t.pollen.gbps.push(a);
      t.numpy.gbps.push(b);
      t.ratios.push(a / b);
    }
  }
  np.close();
  return { hello, targets };
}

const sizes = parseSizes(flags.sizes);
const machine = machineInfo();
log(
  `FedAvg targets, head to head — ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}, load ${machine.loadAverage1m}`,
);
const most = Math.max(...sizes.map(({ K, P }) => K * P));
const pool = allocKernelFloat32(most);
if (pool === null) throw new Error(`The kernel's memory cannot hold ${most * 4} bytes of updates here`);
const pages = pageInfo(); // what the pool's growth got: read once, printed and kept
log(pages.line);

const results = [];
for (const { K, P } of sizes) {
  const { hello, targets } = await runSize(K, P, pool);
  log(
    `\nK = ${K} × P = ${num(P)} float32 · numpy ${hello.numpy}, OpenBLAS core ${hello.openblas.core}, ${hello.openblas.threads} threads`,
  );
  const summary = targets.map((t) => {
    const ci = medianInterval(t.ratios);
    const sorted = Float64Array.from(t.ratios).sort();
    return {
      target: t.name,
      goal: t.goal,
      pairs: t.ratios.length,
      median: median(t.ratios),
      low: ci.low,
      high: ci.high,
      q1: percentile(sorted, 25),
      q3: percentile(sorted, 75),
      pollenGbps: median(t.pollen.gbps),
      numpyGbps: median(t.numpy.gbps),
      reps: { pollen: t.pollen.reps, numpy: t.numpy.reps },
    };
  });
  log(
    table(
      [
        'target',
        'pairs',
        'median ratio',
        '95% interval',
        'quartiles',
        'Pollen GB/s',
        'numpy GB/s',
        'verdict',
      ],
      summary.map((s) => [
        `${s.target} (≥ ${s.goal})`,
        s.pairs,
        times(s.median),
        `${times(s.low)}–${times(s.high)}`,
        `${times(s.q1)}–${times(s.q3)}`,
        num(s.pollenGbps, 2),
        num(s.numpyGbps, 2),
        s.median >= s.goal ? (s.low >= s.goal ? 'PASS (whole interval)' : 'PASS (median)') : 'FAIL',
      ]),
    ),
  );
  results.push({
    K,
    P,
    numpy: hello.numpy,
    openblas: hello.openblas,
    targets: summary.map((s) => ({
      ...s,
      median: round(s.median, 3),
      low: round(s.low, 3),
      high: round(s.high, 3),
      q1: round(s.q1, 3),
      q3: round(s.q3, 3),
      pollenGbps: round(s.pollenGbps, 2),
      numpyGbps: round(s.numpyGbps, 2),
    })),
  });
}
const doc = {
  bench: 'fedavg-targets',
  machine,
  pages: { kernelMemory: pages.pages, transparentHugepage: pages.thp },
  seconds: SECONDS,
  results,
  loadAtEnd: machineInfo().loadAverage1m,
};
mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'out', 'fedavg-targets.json'), `${JSON.stringify(doc, null, 2)}\n`);
if (flags.json) console.log(JSON.stringify(doc));
await closeKernelWorkers();
