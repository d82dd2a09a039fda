/**
 * FedAvg aggregation benchmark: K updates of P float32 parameters averaged with weights, in GB/s
 * of updates read (K · P · 4 bytes per aggregation), against baselines measured in the same run:
 * numpy computing the same weighted average in `python3` (np.average with weights; ufuncs with
 * out=; OpenBLAS `w @ stack`), a plain memory copy of the same bytes (`Float32Array.set`), and
 * the plain JS loop `out[i] += w * x[i]`. Also a split over worker_threads on SharedArrayBuffer.
 *
 *   npx tsx bench/fedavg.ts                 K=10, P=25M (1 GB per aggregation) and P=1M
 *   npx tsx bench/fedavg.ts --k 4 --p 5000000 --seconds 1
 *   … --json                                one JSON document on stdout (always written to bench/out/)
 *
 * Not part of the test suite: targets print PASS/FAIL but never change the exit code.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { averageRange, normalizeWeights, weightedAverage } from '../src/strategies/aggregate.js';
import { machineInfo } from './lib/env.js';
import { median, round } from './lib/stats.js';
import { num, table, times } from './lib/table.js';

const TSX_API = import.meta.resolve('tsx/esm/api');
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// ------------------------------------------------------------------------------ worker side
if (!isMainThread) {
  const { updates, out, weights } = workerData as {
    updates: Float32Array[];
    out: Float32Array;
    weights: Float64Array;
  };
  parentPort?.on('message', (m: { start: number; end: number }) => {
    averageRange(out, updates, weights, m.start, m.end);
    parentPort?.postMessage('done');
  });
}

// ------------------------------------------------------------------------------ measurement
function timeIt(fn: () => void, seconds: number, maxReps = 7): number[] {
  fn(); // warm-up
  const times: number[] = [];
  const until = performance.now() + seconds * 1000;
  while (times.length < maxReps && (times.length < 2 || performance.now() < until)) {
    const t = performance.now();
    fn();
    times.push((performance.now() - t) / 1000);
  }
  return times;
}

async function timeAsync(fn: () => Promise<void>, seconds: number, maxReps = 7): Promise<number[]> {
  await fn();
  const times: number[] = [];
  const until = performance.now() + seconds * 1000;
  while (times.length < maxReps && (times.length < 2 || performance.now() < until)) {
    const t = performance.now();
    await fn();
    times.push((performance.now() - t) / 1000);
  }
  return times;
}

const PY = String.raw`
import json, sys, time
import numpy as np
K, P, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = np.random.default_rng(0)
X = rng.random((K, P), dtype=np.float32)
w = np.arange(1, K + 1, dtype=np.float32)
wn = (w / w.sum()).astype(np.float32)
def avg():
    return np.average(X, axis=0, weights=w)
out = np.empty(P, dtype=np.float32); tmp = np.empty(P, dtype=np.float32)
def ufunc():
    np.multiply(X[0], wn[0], out=out)
    for k in range(1, K):
        np.multiply(X[k], wn[k], out=tmp)
        np.add(out, tmp, out=out)
    return out
def blas():
    return wn @ X
res = {}
ref = (w.astype(np.float64) @ X[:, :1000].astype(np.float64)) / w.sum(dtype=np.float64)
for name, fn in (("average", avg), ("ufunc", ufunc), ("blas", blas)):
    r = fn()
    err = float(np.max(np.abs(r[:1000].astype(np.float64) - ref)))
    assert err < 1e-5, (name, err)
    ts = []; until = time.perf_counter() + seconds
    while len(ts) < 7 and (len(ts) < 2 or time.perf_counter() < until):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    res[name] = ts
print(json.dumps({"numpy": np.__version__, "times": res}))
`;

function numpy(
  K: number,
  P: number,
  seconds: number,
): { version: string; times: Record<string, number[]> } | undefined {
  try {
    const out = execFileSync('python3', ['-c', PY, String(K), String(P), String(seconds)], {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
      env: { ...process.env, OPENBLAS_NUM_THREADS: process.env.OPENBLAS_NUM_THREADS ?? '2' },
    });
    const r = JSON.parse(out) as { numpy: string; times: Record<string, number[]> };
    return { version: r.numpy, times: r.times };
  } catch (e) {
    console.error(`numpy baseline failed: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

interface Row {
  name: string;
  gbps: number;
  medianMs: number;
  reps: number;
}

async function runSize(K: number, P: number, seconds: number, workers: number): Promise<Row[]> {
  const bytes = K * P * 4;
  const row = (name: string, ts: number[], b = bytes): Row => {
    const m = median(ts);
    return { name, gbps: b / m / 1e9, medianMs: m * 1000, reps: ts.length };
  };
  // Inputs in shared memory so the worker split reads the very same bytes.
  const updates = Array.from({ length: K }, (_, k) => {
    const a = new Float32Array(new SharedArrayBuffer(P * 4));
    let s = (k + 1) * 2654435761;
    for (let i = 0; i < P; i++) {
      s = (s * 1664525 + 1013904223) >>> 0;
      a[i] = s / 4294967296;
    }
    return a;
  });
  const weightList = updates.map((_, k) => k + 1);
  const weights = normalizeWeights(weightList);
  const out = new Float32Array(new SharedArrayBuffer(P * 4));
  const input = updates.map((a, k) => ({ arrays: [a], weight: weightList[k] as number }));

  // Verify against a float64 reference on a sample of indices.
  const check = (o: Float32Array, name: string) => {
    let worst = 0;
    for (let i = 0; i < P; i += Math.max(1, Math.floor(P / 10_007))) {
      let r = 0;
      for (let k = 0; k < K; k++) r += (weights[k] as number) * ((updates[k] as Float32Array)[i] as number);
      worst = Math.max(worst, Math.abs(r - (o[i] as number)));
    }
    if (!(worst < 1e-6)) throw new Error(`${name}: wrong answer (max error ${worst})`);
  };

  const rows: Row[] = [];
  const ours = timeIt(() => weightedAverage(input, [out]), seconds);
  check(out, 'weightedAverage');
  rows.push(row('Pollen weightedAverage (1 thread)', ours));

  if (workers > 1) {
    const pool = Array.from(
      { length: workers },
      () =>
        new Worker(
          // The worker runs this same .ts file through tsx's API (execArgv loaders do not reach workers).
          `import(${JSON.stringify(TSX_API)}).then((m) => m.tsImport(${JSON.stringify(import.meta.url)}, ${JSON.stringify(import.meta.url)}))`,
          { eval: true, workerData: { updates, out, weights } },
        ),
    );
    const run = () =>
      Promise.all(
        pool.map(
          (w, t) =>
            new Promise<void>((res) => {
              w.once('message', () => res());
              // Split on multiples of 1024 elements so each worker's range is contiguous.
              const per = Math.ceil(P / workers / 1024) * 1024;
              w.postMessage({ start: Math.min(P, t * per), end: Math.min(P, (t + 1) * per) });
            }),
        ),
      ).then(() => undefined);
    out.fill(0);
    const ts = await timeAsync(run, seconds);
    check(out, 'workers');
    rows.push(row(`Pollen averageRange, ${workers} worker_threads (SharedArrayBuffer)`, ts));
    await Promise.all(pool.map((w) => w.terminate()));
  }

  const plain = timeIt(() => {
    out.fill(0);
    for (let k = 0; k < K; k++) {
      const x = updates[k] as Float32Array;
      const w = weights[k] as number;
      for (let i = 0; i < P; i++) out[i] = (out[i] as number) + w * (x[i] as number);
    }
  }, seconds);
  check(out, 'plain loop');
  rows.push(row('plain JS loop out[i] += w*x[i]', plain));

  const dst = new Float32Array(P);
  const copy = timeIt(() => {
    for (let k = 0; k < K; k++) dst.set(updates[k] as Float32Array);
  }, seconds);
  rows.push(row('memory copy (Float32Array.set, same bytes)', copy));

  updates.length = 0; // let the GC take 1 GB back before python allocates its own
  const np = numpy(K, P, seconds);
  if (np) {
    const label: Record<string, string> = {
      average: `numpy ${np.version} np.average(X, axis=0, weights=w)`,
      ufunc: 'numpy np.multiply/np.add with out=',
      blas: 'numpy wn @ X (OpenBLAS, 2 threads)',
    };
    for (const [k, ts] of Object.entries(np.times)) rows.push(row(label[k] ?? k, ts));
  }
  return rows;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      k: { type: 'string', default: '10' },
      p: { type: 'string', multiple: true },
      seconds: { type: 'string', default: '2' },
      workers: { type: 'string', default: '2' },
      json: { type: 'boolean', default: false },
    },
  });
  const K = Number(values.k);
  const sizes = (values.p ?? ['25000000', '1000000']).map(Number);
  const seconds = Number(values.seconds);
  const workers = Number(values.workers);
  const machine = machineInfo();
  const results: { K: number; P: number; rows: Row[]; ratios: Record<string, number> }[] = [];
  const log = values.json ? () => {} : (s: string) => console.log(s);
  log(
    `FedAvg aggregation — ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}, load ${machine.loadAverage1m}`,
  );
  for (const P of sizes) {
    const rows = await runSize(K, P, seconds, workers);
    const g = (prefix: string) => rows.find((r) => r.name.startsWith(prefix))?.gbps ?? Number.NaN;
    const ours = g('Pollen weightedAverage');
    const best = Math.max(ours, g('Pollen averageRange'));
    const ratios = {
      oursOverNpAverage: ours / g('numpy'),
      oursOverNpUfunc: ours / g('numpy np.multiply'),
      oursOverNpBlas: ours / g('numpy wn @ X'),
      oursOverCopy: ours / g('memory copy'),
      oursOverPlainLoop: ours / g('plain JS'),
      workersOverNpUfunc: g('Pollen averageRange') / g('numpy np.multiply'),
      workersOverCopy: g('Pollen averageRange') / g('memory copy'),
      bestOverNpAverage: best / g('numpy '),
      bestOverCopy: best / g('memory copy'),
    };
    results.push({ K, P, rows, ratios });
    log(`\nK = ${K} updates × P = ${num(P)} float32 (${num((K * P * 4) / 1e6)} MB read per aggregation)`);
    log(
      table(
        ['', 'GB/s', 'median', 'reps', '÷ copy'],
        rows.map((r) => [
          r.name,
          num(r.gbps, 2),
          `${num(r.medianMs, 1)} ms`,
          r.reps,
          times(r.gbps / g('memory copy')),
        ]),
      ),
    );
    log(
      table(
        ['ratio (same run)', 'value'],
        Object.entries(ratios).map(([k, v]) => [k, times(v)]),
      ),
    );
    const pass = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
    log(
      `target ≥ numpy np.average (1 thread):      ${pass(ratios.oursOverNpAverage >= 1)} ${times(ratios.oursOverNpAverage)}`,
    );
    log(
      `target ≥ numpy ufuncs with out= (1 thread): ${pass(ratios.oursOverNpUfunc >= 1)} ${times(ratios.oursOverNpUfunc)}; with workers ${times(ratios.workersOverNpUfunc)}`,
    );
    log(
      `target ≥ ½ memory copy (1 thread):          ${pass(ratios.oursOverCopy >= 0.5)} ${times(ratios.oursOverCopy)}`,
    );
  }
  const doc = {
    bench: 'fedavg',
    machine,
    K,
    seconds,
    workers,
    results: results.map((r) => ({ ...r, rows: r.rows.map((x) => ({ ...x, gbps: round(x.gbps, 3) })) })),
  };
  mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'out', 'fedavg.json'), `${JSON.stringify(doc, null, 2)}\n`);
  if (values.json) console.log(JSON.stringify(doc));
}

if (isMainThread) await main();
