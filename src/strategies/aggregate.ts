/**
 * Weighted averaging of model updates, the inner loop of FedAvg and its relatives.
 *
 * Input is deliberately minimal (`{ arrays: Float32Array[]; weight: number }`, one entry per
 * update, layers in the same order) so this module depends on nothing: the SDK records convert
 * to it by listing their arrays in a fixed key order.
 *
 * Speed: the cost is memory traffic, so every update is read exactly once and the output is
 * written ceil(K / 4) times, not K times: updates are taken four at a time
 * (`out[i] += w0*a[i] + w1*b[i] + w2*c[i] + w3*d[i]`, a 4-way unroll over updates) over cache-sized
 * chunks of the layer, so the partial output of a chunk stays in cache between groups. The loops
 * run in WebAssembly SIMD (wasm-kernel.ts) where available, and over worker threads when the
 * updates live in shared memory (kernel-workers.ts). See docs/benchmarks.md.
 *
 * Numerics: weights are normalised once, in float64, to sum to 1 (so the result never
 * overflows where the inputs do not, and no final division is needed). Each group of four is
 * summed in float64 (JavaScript arithmetic) and rounded to float32 once, so a large layer sees
 * ceil(K / 4) roundings per element. Layers shorter than `SMALL_LAYER` elements (biases, norms,
 * heads) are summed over all K updates in float64 and rounded once.
 */
import { PollenError } from '../sdk/index.js';
import {
  allShared,
  defaultThreads,
  PARALLEL_MIN_BYTES,
  parallelSum,
  type SumRange,
} from './kernel-workers.js';
import { wasmAverageRange, wasmKernel } from './wasm-sum.js';

/** One update: its layers (same count and lengths in every update) and its weight (> 0). */
export interface WeightedArrays {
  arrays: Float32Array[];
  weight: number;
}

/** Layers with fewer elements than this are accumulated entirely in float64. */
export const SMALL_LAYER = 1 << 16;

/** Elements per chunk: 4 inputs + output × 4 bytes × 16 Ki ≈ 320 KiB, inside L2. */
const CHUNK = 1 << 14;

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
}

/**
 * Per layer `out[l] = Σ_k w_k · updates[k].arrays[l] / Σ_k w_k`. Writes into `out` when given
 * (it must match the layer lengths; it may be one of the inputs), otherwise allocates (a layer
 * in shared memory when that layer's updates are). Throws PollenError INVALID_ARGUMENT on mismatched layer counts or
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
  const alone = (r: SumRange) => averageRange(r.o, r.xs, ws, r.start, r.end);
  const parallel = threads > 1 && bytes >= PARALLEL_MIN_BYTES;
  if (parallel) parallelSum(big, ws, threads, alone);
  for (const r of ranges) if (!parallel || !big.includes(r)) alone(r);
  return result;
}

/**
 * The kernel: `o[i] = Σ_k ws[k] · xs[k][i]` for `start <= i < end`, weights already normalised.
 * Large ranges run in WebAssembly SIMD (wasm-sum.ts) where the runtime has it, else in the
 * JavaScript loops below; both give the same bits. Exported so a caller can split one layer
 * across threads (each thread a range).
 */
export function averageRange(
  o: Float32Array,
  xs: readonly Float32Array[],
  ws: Float64Array,
  start: number,
  end: number,
): void {
  const wasm = end - start < SMALL_LAYER ? null : wasmKernel();
  if (wasm === null) averageRangeJs(o, xs, ws, start, end);
  else wasmAverageRange(wasm, o, xs, ws, start, end);
}

/** The same sum in JavaScript: layers under SMALL_LAYER, runtimes without WebAssembly SIMD, and the tests' reference. */
export function averageRangeJs(
  o: Float32Array,
  xs: readonly Float32Array[],
  ws: Float64Array,
  start: number,
  end: number,
): void {
  const K = xs.length;
  if (end - start < SMALL_LAYER) {
    sumAll64(o, xs, ws, start, end);
    return;
  }
  for (let s = start; s < end; s += CHUNK) {
    const e = Math.min(end, s + CHUNK);
    let k = 0;
    let add = false;
    for (; k + 4 <= K; k += 4) {
      const a = xs[k] as Float32Array;
      const b = xs[k + 1] as Float32Array;
      const c = xs[k + 2] as Float32Array;
      const d = xs[k + 3] as Float32Array;
      const wa = ws[k] as number;
      const wb = ws[k + 1] as number;
      const wc = ws[k + 2] as number;
      const wd = ws[k + 3] as number;
      if (add) add4(o, a, b, c, d, wa, wb, wc, wd, s, e);
      else set4(o, a, b, c, d, wa, wb, wc, wd, s, e);
      add = true;
    }
    const r = K - k;
    if (r === 3) {
      group3(
        o,
        xs[k] as Float32Array,
        xs[k + 1] as Float32Array,
        xs[k + 2] as Float32Array,
        ws[k] as number,
        ws[k + 1] as number,
        ws[k + 2] as number,
        s,
        e,
        add,
      );
    } else if (r === 2) {
      group2(
        o,
        xs[k] as Float32Array,
        xs[k + 1] as Float32Array,
        ws[k] as number,
        ws[k + 1] as number,
        s,
        e,
        add,
      );
    } else if (r === 1) {
      group1(o, xs[k] as Float32Array, ws[k] as number, s, e, add);
    }
  }
}

// The loops below index typed arrays inside bounds checked by the caller; `as number` is
// erased at compile time and only satisfies noUncheckedIndexedAccess.

function sumAll64(
  o: Float32Array,
  xs: readonly Float32Array[],
  ws: Float64Array,
  start: number,
  end: number,
): void {
  const K = xs.length;
  for (let i = start; i < end; i++) {
    let acc = 0;
    for (let k = 0; k < K; k++) acc += (ws[k] as number) * ((xs[k] as Float32Array)[i] as number);
    o[i] = acc;
  }
}

function set4(
  o: Float32Array,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  d: Float32Array,
  wa: number,
  wb: number,
  wc: number,
  wd: number,
  s: number,
  e: number,
): void {
  for (let i = s; i < e; i++) {
    o[i] = wa * (a[i] as number) + wb * (b[i] as number) + wc * (c[i] as number) + wd * (d[i] as number);
  }
}

function add4(
  o: Float32Array,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  d: Float32Array,
  wa: number,
  wb: number,
  wc: number,
  wd: number,
  s: number,
  e: number,
): void {
  // Sum the group first, then add it to the output: one float32 rounding per group. (An
  // explicit 4-way unroll over i measured no faster in V8 and sometimes slower; see the bench.)
  for (let i = s; i < e; i++) {
    o[i] =
      (o[i] as number) +
      (wa * (a[i] as number) + wb * (b[i] as number) + wc * (c[i] as number) + wd * (d[i] as number));
  }
}

function group3(
  o: Float32Array,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  wa: number,
  wb: number,
  wc: number,
  s: number,
  e: number,
  add: boolean,
): void {
  if (add)
    for (let i = s; i < e; i++)
      o[i] = (o[i] as number) + wa * (a[i] as number) + wb * (b[i] as number) + wc * (c[i] as number);
  else
    for (let i = s; i < e; i++) o[i] = wa * (a[i] as number) + wb * (b[i] as number) + wc * (c[i] as number);
}

function group2(
  o: Float32Array,
  a: Float32Array,
  b: Float32Array,
  wa: number,
  wb: number,
  s: number,
  e: number,
  add: boolean,
): void {
  if (add)
    for (let i = s; i < e; i++) o[i] = (o[i] as number) + wa * (a[i] as number) + wb * (b[i] as number);
  else for (let i = s; i < e; i++) o[i] = wa * (a[i] as number) + wb * (b[i] as number);
}

function group1(o: Float32Array, a: Float32Array, wa: number, s: number, e: number, add: boolean): void {
  if (add) for (let i = s; i < e; i++) o[i] = (o[i] as number) + wa * (a[i] as number);
  else for (let i = s; i < e; i++) o[i] = wa * (a[i] as number);
}
