/**
 * Weighted averaging of model updates, the inner loop of FedAvg and its relatives.
 *
 * Input is deliberately minimal (`{ arrays: Float32Array[]; weight: number }`, one entry per
 * update, layers in the same order) so this module depends on nothing: the SDK records convert
 * to it by listing their arrays in a fixed key order.
 *
 * Speed: the cost is memory traffic, so every update is read exactly once: the sum runs tile by
 * tile (an accumulator for a few thousand elements stays in cache while all K updates add
 * their share of the tile), in WebAssembly SIMD (wasm-kernel.ts) where available, reading the
 * updates in place when they were received into the kernel's memory (kernel-memory.ts), and over
 * worker threads that share that memory (kernel-workers.ts). See docs/benchmarks.md.
 *
 * Numerics: weights are normalised once, in float64, to sum to 1 (so the result never
 * overflows where the inputs do not, and no final division is needed). By default each element
 * is then summed as Flower's message-API FedAvg sums it (`aggregate_arrayrecords`: numpy's
 * `x_0 * w_0`, then `+= x_k * w_k`, float32 throughout, weights rounded to float32), so Pollen
 * gives Flower's bits; `precision: 'float64'` sums in float64 in the same order and rounds to
 * float32 once instead. docs/strategies.md says why the default is float32.
 */
import { PollenError } from '../sdk/index.js';
import {
  allShared,
  defaultThreads,
  PARALLEL_MIN_BYTES,
  parallelSum,
  type SumRange,
} from './kernel-workers.js';
import { type Precision, wasmAverageRange, wasmKernel } from './wasm-sum.js';

export type { Precision } from './wasm-sum.js';

/** One update: its layers (same count and lengths in every update) and its weight (> 0). */
export interface WeightedArrays {
  arrays: Float32Array[];
  weight: number;
}

/** Layers with fewer elements than this are summed in JavaScript (a WebAssembly call costs more). */
export const SMALL_LAYER = 1 << 16;

function invalid(message: string, data?: Record<string, unknown>): PollenError {
  return new PollenError('INVALID_ARGUMENT', message, {
    hint: 'Every update must have the same layers (count and lengths) and a finite weight > 0.',
    ...(data === undefined ? {} : { data }),
  });
}

/**
 * Normalise weights so they sum to 1 (in float64). Refuses an empty list and any weight that
 * is not finite and > 0, and a total that overflows.
 */
export function normalizeWeights(weights: readonly number[]): Float64Array {
  if (weights.length === 0) throw invalid('No updates to aggregate');
  let total = 0;
  for (let k = 0; k < weights.length; k++) {
    const w = weights[k] as number;
    if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0) {
      throw invalid(`Update ${k} has weight ${String(w)}: weights must be finite and > 0`, {
        index: k,
      });
    }
    total += w;
  }
  if (!Number.isFinite(total)) throw invalid('The sum of the weights overflows');
  const out = new Float64Array(weights.length);
  for (let k = 0; k < weights.length; k++) out[k] = (weights[k] as number) / total;
  return out;
}

/** How weightedAverage may run. */
export interface AverageOptions {
  /**
   * Threads for updates in shared memory (SharedArrayBuffer) totalling at least
   * PARALLEL_MIN_BYTES (default: the cores available; 1 keeps it on the calling thread).
   */
  threads?: number;
  /**
   * `float32` (default): Flower's arithmetic, bit for bit. `float64`: a float64 sum rounded once,
   * within half a float32 ulp of the exact average up to the float64 summation error.
   */
  precision?: Precision;
}

/**
 * Per layer `out[l] = Σ_k w_k · updates[k].arrays[l] / Σ_k w_k`. Writes into `out` when given
 * (it must match the layer lengths; it may be one of the inputs), otherwise allocates (a layer
 * in shared memory when its updates are, in the kernel's memory or not; else in ordinary
 * memory). Throws PollenError INVALID_ARGUMENT on mismatched layer counts or
 * lengths and on bad weights. Values inside the arrays are not checked: a NaN parameter gives a
 * NaN average.
 */
export function weightedAverage(
  updates: readonly WeightedArrays[],
  out?: Float32Array[],
  options: AverageOptions = {},
): Float32Array[] {
  const ws = normalizeWeights(updates.map((u) => u.weight));
  const first = updates[0] as WeightedArrays;
  const layers = first.arrays.length;
  for (let k = 1; k < updates.length; k++) {
    const arrays = (updates[k] as WeightedArrays).arrays;
    if (arrays.length !== layers) {
      throw invalid(`Update ${k} has ${arrays.length} layers, update 0 has ${layers}`, { index: k });
    }
  }
  if (out !== undefined && out.length !== layers) {
    throw invalid(`The output has ${out.length} layers, the updates have ${layers}`);
  }
  const result: Float32Array[] = out ?? [];
  const ranges: SumRange[] = [];
  for (let l = 0; l < layers; l++) {
    const n = (first.arrays[l] as Float32Array).length;
    const xs: Float32Array[] = new Array(updates.length);
    for (let k = 0; k < updates.length; k++) {
      const x = (updates[k] as WeightedArrays).arrays[l];
      if (!(x instanceof Float32Array)) throw invalid(`Update ${k} layer ${l} is not a Float32Array`);
      if (x.length !== n) {
        throw invalid(`Update ${k} layer ${l} has ${x.length} elements, update 0 has ${n}`, {
          index: k,
          layer: l,
        });
      }
      xs[k] = x;
    }
    let o = out?.[l];
    if (o === undefined) {
      // In shared memory where its inputs are (the workers can write it), or in ordinary memory;
      // never in the kernel's memory, even beside inputs there: an aggregate outlives its round
      // (the next model, a strategy's state), so only garbage collection could free its block, many
      // rounds later. Pass `out` arrays from allocKernelFloat32 to have it written in place.
      const shared = xs.every((x) => x.buffer instanceof SharedArrayBuffer);
      o = new Float32Array(shared ? new SharedArrayBuffer(n * 4) : new ArrayBuffer(n * 4));
      result.push(o);
    } else if (o.length !== n) {
      throw invalid(`Output layer ${l} has ${o.length} elements, the updates have ${n}`);
    }
    ranges.push({ o, xs, start: 0, end: n });
  }
  // Large layers whose arrays are all in shared memory can go to threads; the rest stay here.
  const big = ranges.filter((r) => r.end >= SMALL_LAYER && allShared([r]));
  const bytes = big.reduce((sum, r) => sum + r.end * 4 * r.xs.length, 0);
  const threads = options.threads ?? defaultThreads();
  const precision = options.precision ?? 'float32';
  const alone = (r: SumRange) => averageRange(r.o, r.xs, ws, r.start, r.end, precision);
  const parallel = threads > 1 && bytes >= PARALLEL_MIN_BYTES;
  if (parallel) parallelSum(big, ws, threads, alone, precision);
  for (const r of ranges) if (!parallel || !big.includes(r)) alone(r);
  return result;
}

/**
 * The kernel: `o[i] = Σ_k ws[k] · xs[k][i]` for `start <= i < end`, weights already normalised.
 * Large ranges run in WebAssembly SIMD (wasm-sum.ts) where the runtime has it, reading updates
 * that live in the kernel's memory in place; else the JavaScript loop below; both give the same
 * bits. Exported so a caller can split one layer across threads (each thread a range).
 */
export function averageRange(
  o: Float32Array,
  xs: readonly Float32Array[],
  ws: Float64Array,
  start: number,
  end: number,
  precision: Precision = 'float32',
): void {
  const wasm = end - start < SMALL_LAYER ? null : wasmKernel();
  if (wasm === null) averageRangeJs(o, xs, ws, start, end, precision);
  else {
    const { kernel, memory } = wasm;
    const addrs = xs.map((x) => memory.addressOf(x));
    wasmAverageRange(kernel, o, memory.addressOf(o), xs, addrs, ws, start, end, precision);
  }
}

/** Elements per tile of the JavaScript loop: a 16 KiB (float32) or 32 KiB (float64) accumulator. */
const JS_TILE = 1 << 12;

/**
 * The same sum in JavaScript, the definition of the kernel's bits. float32: per element
 * `acc = fl(w_0 · x_0)`, then `acc = fl(acc + fl(w_k · x_k))` for k = 1 … K−1 with the weights
 * rounded to float32 first (fl: round to float32; a float64 product or sum of two float32 values
 * rounded to float32 is the float32 operation's result), which is numpy's float32 arithmetic in
 * Flower's order. float64: `acc = w_0 · x_0`, `acc += w_k · x_k` in float64, rounded to float32
 * once. Either way one update with weight 1 comes back bit for bit (−0 included). Runs tile by
 * tile (the accumulator tile stays in cache); used for small layers, runtimes without
 * WebAssembly SIMD, and as the tests' reference.
 */
export function averageRangeJs(
  o: Float32Array,
  xs: readonly Float32Array[],
  ws: Float64Array,
  start: number,
  end: number,
  precision: Precision = 'float32',
): void {
  const single = precision === 'float32';
  const n = Math.max(0, Math.min(JS_TILE, end - start));
  // A tile apart from the output, which may be one of the inputs.
  const acc = single ? new Float32Array(n) : new Float64Array(n);
  for (let s = start; s < end; s += JS_TILE) {
    const e = Math.min(end, s + JS_TILE);
    // Indices inside bounds checked by the caller; `as number` only satisfies noUncheckedIndexedAccess.
    const x0 = xs[0] as Float32Array;
    const w0 = single ? Math.fround(ws[0] as number) : (ws[0] as number);
    for (let i = s; i < e; i++) acc[i - s] = w0 * (x0[i] as number); // a Float32Array store rounds
    for (let k = 1; k < xs.length; k++) {
      const x = xs[k] as Float32Array;
      if (single) {
        const w = Math.fround(ws[k] as number);
        for (let i = s; i < e; i++) acc[i - s] = (acc[i - s] as number) + Math.fround(w * (x[i] as number));
      } else {
        const w = ws[k] as number;
        for (let i = s; i < e; i++) acc[i - s] = (acc[i - s] as number) + w * (x[i] as number);
      }
    }
    for (let i = s; i < e; i++) o[i] = acc[i - s] as number;
  }
}
