/**
 * The weighted sum split over threads, for updates that live in shared memory (the kernel's
 * memory, read in place by every thread, or another SharedArrayBuffer): one memory-bound thread
 * does not reach the machine's bandwidth, two or more do. The calling thread and `threads − 1`
 * worker threads take chunks of the elements one at a time from a shared counter,
 * all running the WebAssembly kernel (wasm-sum.ts) over the same shared WebAssembly memory; each
 * element is summed by one thread in reply order, so the result is bit for bit the
 * single-threaded one. Taking chunks rather than fixed shares keeps a thread that gets less CPU
 * (a busy machine) from holding up the others.
 *
 * The call stays synchronous (a strategy's aggregation step is): the caller posts the job, takes
 * chunks until none is left, then blocks in `Atomics.wait` until every chunk is counted done.
 * Workers start on first use, are reused, do not keep the process alive (`unref`), and
 * `closeKernelWorkers()` ends them. Updates in ordinary memory cannot be read by another thread
 * without a copy that costs what the sum costs, so they stay on the calling thread.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { KernelMemory } from './kernel-memory.js';
import { F32_UNROLL, GROUP } from './wasm-kernel.js';
import {
  kernelWasmModule,
  type Precision,
  SCRATCH_BYTES,
  TILE,
  wasmAverageRange,
  wasmKernel,
} from './wasm-sum.js';

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

// The worker: instantiates the module over the shared memory with its own scratch block and runs
// wasmAverageRange (shipped as source, so the worker needs no module loader: the library runs
// from .ts under test runners).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const wasmAverageRange = ${wasmAverageRange.toString()};
const { module, memory, scratch, tile, unroll, group, inputs } = workerData;
const instance = new WebAssembly.Instance(module, { env: { memory } });
const k = { memory, fns: instance.exports, scratch, tile, unroll, group, inputs };
parentPort.on('message', ({ jobs, chunks, ws, precision, control }) => {
  const c = new Int32Array(control);
  const n = chunks.length / 3;
  for (let i = Atomics.add(c, 0, 1); i < n; i = Atomics.add(c, 0, 1)) {
    const j = jobs[chunks[3 * i]];
    try {
      wasmAverageRange(k, j.o, j.oAddr, j.xs, j.addrs, ws, chunks[3 * i + 1], chunks[3 * i + 2], precision);
    } catch {
      Atomics.store(c, 2, 1);
    }
    Atomics.add(c, 1, 1);
    Atomics.notify(c, 1);
  }
});
`;

let drops = 0;

/** How many times a failed or hung worker made this process drop its pool. */
export function kernelWorkerDrops(): number {
  return drops;
}

/** Bytes of updates per chunk that a thread takes at a time (a few milliseconds of work). */
const CHUNK_BYTES = 16 << 20;

/** Fewest elements per chunk: each update's run per chunk stays long enough for the prefetcher. */
const CHUNK_MIN = 1 << 15;

/**
 * The work cut into chunks, as (job, start, end) triples: each thread takes the next chunk when
 * it is free, so a thread that gets less CPU (a busy machine) does less of it. Chunks need not
 * be whole tiles: each element's sum is the same wherever a range starts.
 */
function chunksOf(jobs: readonly Job[], threads: number): Int32Array {
  const out: number[] = [];
  jobs.forEach((j, q) => {
    // At most CHUNK_BYTES, and at least four chunks per thread where CHUNK_MIN allows.
    const bytesCap = Math.floor(CHUNK_BYTES / (4 * j.xs.length));
    const perThread = Math.ceil((j.end - j.start) / (4 * threads));
    const size = Math.max(CHUNK_MIN, Math.floor(Math.min(bytesCap, perThread) / 1024) * 1024);
    for (let start = j.start; start < j.end; start += size) out.push(q, start, Math.min(j.end, start + size));
  });
  return Int32Array.from(out);
}

interface Helper {
  worker: Worker;
  scratch: { start: number; size: number };
  memory: KernelMemory;
}

let pool: Helper[] | undefined;

function workers(count: number, memory: KernelMemory): Helper[] | null {
  if (pool !== undefined && pool.length >= count) return pool;
  pool ??= [];
  while (pool.length < count) {
    // Each worker keeps its scratch block (a few hundred KiB) until it has ended.
    const scratch = memory.allocate(SCRATCH_BYTES);
    if (scratch === null) return null;
    const workerData = {
      module: kernelWasmModule(),
      memory: memory.memory,
      scratch: scratch.start,
      tile: TILE,
      unroll: F32_UNROLL,
      group: GROUP,
      inputs: GROUP,
    };
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData });
    worker.unref();
    pool.push({ worker, scratch, memory });
  }
  return pool;
}

/** Ends the kernel's worker threads (they are started again when next needed). */
export async function closeKernelWorkers(): Promise<void> {
  const all = pool ?? [];
  pool = undefined;
  await Promise.all(
    all.map(async (h) => {
      await h.worker.terminate();
      h.memory.release(h.scratch); // only once the thread can no longer write into it
    }),
  );
}

/** Threads to use by default: the cores this process may run on. */
export function defaultThreads(): number {
  return availableParallelism();
}

/**
 * Cuts every range into chunks (at most 16 MiB of updates, at least 32K elements, four or more
 * per thread where that allows) that the calling thread and `threads − 1` workers take one at a
 * time until none is left, and returns when all are done. The arrays must be in shared memory (allShared). Falls back to the calling thread
 * alone when WebAssembly is missing, a worker fails or does not answer in time (`alone` sums one
 * range on the calling thread). Returns whether worker threads were given the work to share.
 */
export function parallelSum(
  ranges: readonly SumRange[],
  ws: Float64Array,
  threads: number,
  alone: (r: SumRange) => void,
  precision: Precision = 'float32',
): boolean {
  const wasm = wasmKernel();
  const helpers = wasm === null || threads < 2 ? null : workers(threads - 1, wasm.memory);
  if (wasm === null || helpers === null) {
    for (const r of ranges) alone(r);
    return false;
  }
  const { kernel, memory } = wasm;
  // Arrays in the kernel's memory go by address (read in place); others as shared arrays.
  const jobs: Job[] = ranges.map((r) => {
    const addrs = r.xs.map((x) => memory.addressOf(x));
    const oAddr = memory.addressOf(r.o);
    return { o: r.o, oAddr, xs: r.xs, addrs, start: r.start, end: r.end };
  });
  const chunks = chunksOf(jobs, threads);
  const n = chunks.length / 3;
  // control: [0] the next chunk to take, [1] chunks done, [2] set when a worker failed one.
  const control = new SharedArrayBuffer(12);
  const c = new Int32Array(control);
  const shipped = jobs.map((j) => ({
    ...j,
    o: j.oAddr >= 0 ? null : j.o,
    xs: j.xs.map((x, q) => ((j.addrs[q] as number) >= 0 ? null : x)),
  }));
  const posted = Math.min(threads - 1, n - 1);
  for (let t = 0; t < posted; t++)
    (helpers[t] as Helper).worker.postMessage({ jobs: shipped, chunks, ws, precision, control });
  for (let i = Atomics.add(c, 0, 1); i < n; i = Atomics.add(c, 0, 1)) {
    const j = jobs[chunks[3 * i] as number] as Job;
    wasmAverageRange(
      kernel,
      j.o,
      j.oAddr,
      j.xs,
      j.addrs,
      ws,
      chunks[3 * i + 1] as number,
      chunks[3 * i + 2] as number,
      precision,
    );
    Atomics.add(c, 1, 1);
  }
  const until = Date.now() + WORKER_TIMEOUT_MS;
  for (let done = Atomics.load(c, 1); done < n; done = Atomics.load(c, 1)) {
    if (Atomics.wait(c, 1, done, Math.max(0, until - Date.now())) === 'timed-out') break;
  }
  if (Atomics.load(c, 1) < n || Atomics.load(c, 2) !== 0) {
    // A worker failed or hung: forget the pool and redo all on this thread. A late write of a
    // worker not yet stopped lands on identical values while the inputs stay as they are, so
    // Strategy.start frees no input of a round that dropped workers (kernelWorkerDrops); the
    // worker's scratch block is never handed out again.
    const dropped = pool ?? [];
    pool = undefined;
    drops++;
    for (const h of dropped) void h.worker.terminate();
    for (const r of ranges) alone(r);
    return false;
  }
  return posted > 0;
}

/** One range with the addresses of its arrays in the kernel's memory (-1: elsewhere). */
interface Job {
  o: Float32Array;
  oAddr: number;
  xs: readonly Float32Array[];
  addrs: number[];
  start: number;
  end: number;
}
