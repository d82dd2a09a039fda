/**
 * The weighted sum split over threads, for updates that live in shared memory
 * (SharedArrayBuffer): one memory-bound thread does not reach the machine's bandwidth, two or
 * more do. The calling thread takes one share and `threads − 1` worker threads the others, all
 * running the WebAssembly kernel (wasm-sum.ts) on their own range of elements, so the result is
 * bit for bit the single-threaded one.
 *
 * The call stays synchronous (a strategy's aggregation step is): the caller posts the job, does
 * its own share, then blocks in `Atomics.wait` until the workers have counted themselves done.
 * Workers start on first use, are reused, do not keep the process alive (`unref`), and
 * `closeKernelWorkers()` ends them. Updates in ordinary memory cannot be read by another thread
 * without a copy that costs what the sum costs, so they stay on the calling thread.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { kernelModule } from './wasm-kernel.js';
import { WASM_CHUNK, wasmAverageRange, wasmKernel } from './wasm-sum.js';

/** One range of one layer: `o[i] = Σ_k ws[k] · xs[k][i]` for start ≤ i < end. */
export interface SumRange {
  o: Float32Array;
  xs: readonly Float32Array[];
  start: number;
  end: number;
}

/** Below this many bytes of updates per job the hand-over costs more than a second thread saves. */
export const PARALLEL_MIN_BYTES = 8 << 20;

/** How long the caller waits for a worker before it gives up on the pool and sums alone. */
const WORKER_TIMEOUT_MS = 60_000;

const isShared = (a: Float32Array): boolean => a.buffer instanceof SharedArrayBuffer;

/** Whether every array of `ranges` is in shared memory, so worker threads can read and write it. */
export function allShared(ranges: readonly SumRange[]): boolean {
  return ranges.every((r) => isShared(r.o) && r.xs.every(isShared));
}

// The worker: instantiates its own copy of the module and runs wasmAverageRange (shipped as
// source, so the worker needs no module loader: the library runs from .ts under test runners).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const wasmAverageRange = ${wasmAverageRange.toString()};
const { exports } = new WebAssembly.Instance(new WebAssembly.Module(workerData.bytes));
const k = { f32: new Float32Array(exports.memory.buffer), fns: exports, chunk: workerData.chunk };
parentPort.on('message', ({ ranges, ws, done }) => {
  const flags = new Int32Array(done);
  try {
    for (const r of ranges) wasmAverageRange(k, r.o, r.xs, ws, r.start, r.end);
  } catch {
    Atomics.store(flags, 1, 1);
  }
  Atomics.add(flags, 0, 1);
  Atomics.notify(flags, 0);
});
`;

let pool: Worker[] | undefined;

function workers(count: number): Worker[] {
  if (pool !== undefined && pool.length >= count) return pool;
  const bytes = kernelModule(Math.ceil((5 * WASM_CHUNK * 4) / 65536));
  pool ??= [];
  while (pool.length < count) {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { bytes, chunk: WASM_CHUNK } });
    w.unref();
    pool.push(w);
  }
  return pool;
}

/** Ends the kernel's worker threads (they are started again when next needed). */
export async function closeKernelWorkers(): Promise<void> {
  const all = pool ?? [];
  pool = undefined;
  await Promise.all(all.map((w) => w.terminate()));
}

/** Threads to use by default: the cores this process may run on. */
export function defaultThreads(): number {
  return availableParallelism();
}

/**
 * Splits every range into `threads` contiguous shares on chunk boundaries, runs share 0 on the
 * calling thread and the others on workers, and returns when all are done. The arrays must be in
 * shared memory (allShared). Falls back to the calling thread alone when WebAssembly is missing,
 * a worker fails or does not answer in time (`alone` sums one range on the calling thread).
 * Returns whether worker threads did their shares.
 */
export function parallelSum(
  ranges: readonly SumRange[],
  ws: Float64Array,
  threads: number,
  alone: (r: SumRange) => void,
): boolean {
  const kernel = wasmKernel();
  if (kernel === null || threads < 2) {
    for (const r of ranges) alone(r);
    return false;
  }
  const shares: SumRange[][] = Array.from({ length: threads }, () => []);
  for (const r of ranges) {
    const per = Math.ceil((r.end - r.start) / threads / WASM_CHUNK) * WASM_CHUNK;
    for (let t = 0; t < threads; t++) {
      const start = Math.min(r.end, r.start + t * per);
      const end = Math.min(r.end, start + per);
      if (end > start) (shares[t] as SumRange[]).push({ ...r, start, end });
    }
  }
  const helpers = workers(threads - 1);
  const done = new SharedArrayBuffer(8);
  const flags = new Int32Array(done);
  let posted = 0;
  for (let t = 1; t < threads; t++) {
    const share = shares[t] as SumRange[];
    if (share.length === 0) continue;
    (helpers[t - 1] as Worker).postMessage({ ranges: share, ws, done });
    posted++;
  }
  for (const r of shares[0] as SumRange[]) wasmAverageRange(kernel, r.o, r.xs, ws, r.start, r.end);
  const until = Date.now() + WORKER_TIMEOUT_MS;
  for (let n = Atomics.load(flags, 0); n < posted; n = Atomics.load(flags, 0)) {
    if (Atomics.wait(flags, 0, n, Math.max(0, until - Date.now())) === 'timed-out') break;
  }
  if (Atomics.load(flags, 0) < posted || Atomics.load(flags, 1) !== 0) {
    // A worker failed or hung: forget the pool (a late write lands on identical values) and redo all.
    void closeKernelWorkers();
    for (const r of ranges) alone(r);
    return false;
  }
  return posted > 0;
}
