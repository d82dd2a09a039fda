/**
 * Weighted averages of arrays of every dtype, each rule one NumPy repeats operation for
 * operation (so a Python strategy can give the same bytes):
 *
 * - float32: the kernel in aggregate.ts (Flower's float32 arithmetic by default).
 * - float64: summed in float64, reply by reply from the first term (`out = w_0 · x_0`, then
 *   `out += w_k · x_k`, weights normalised to 1): Flower's `aggregate_arrayrecords`, bit for bit.
 * - float16 (default precision, 'float32'): summed in float16 as Flower's code runs on numpy
 *   (`value * weight` on a float16 array rounds the weight to float16, and every product and every
 *   `+=` to float16), reply by reply from the first term. With `precision: 'float64'` (the
 *   strategies that keep state): widened to float64 (exact), summed as float64 arrays are and
 *   rounded to float16 once.
 * - integers: summed in float64 as float64 arrays are, then rounded to the nearest integer (ties
 *   to even, as NumPy's `rint`) and clipped to the dtype's range. Exact while the values and
 *   their weighted sums stay within 2^53 (int64 and uint64 beyond that lose their low bits).
 * - bool: as an integer 0/1, so the result is the weighted majority; a tie is false.
 */
import { float16Value, float16Round as half, toFloat16 } from '../sdk/float16.js';
import { DTYPES, type DType, type TypedArray } from '../sdk/records.js';
import type { Precision } from './aggregate.js';

/**
 * out = Σ_k ws[k] · xs[k], in float64 (weights already normalised), from the first term rather
 * than from +0, as numpy's `x_0 * w_0` then `+=` (so −0 · w stays −0).
 */
function average64(xs: readonly Float64Array[], ws: Float64Array): Float64Array {
  const x0 = xs[0] as Float64Array;
  const w0 = ws[0] as number;
  const out = new Float64Array(x0.length);
  for (let i = 0; i < out.length; i++) out[i] = w0 * (x0[i] as number);
  for (let k = 1; k < xs.length; k++) {
    const x = xs[k] as Float64Array;
    const w = ws[k] as number;
    for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) + w * (x[i] as number);
  }
  return out;
}

/** The value of every float16 bit pattern (512 KiB), made on the first float16 average. */
let halfValues: Float64Array | undefined;

/**
 * out = Σ_k ws[k] · xs[k] in float16 arithmetic, Flower's order: `acc = h(x_0 · h(w_0))`, then
 * `acc = h(acc + h(x_k · h(w_k)))` (h: round to float16, float16Round; the weights straight from
 * float64, not through float32).
 * The product or sum of two float16 values is exact in float64 (at most 51 significant bits), so
 * rounding it once is the correctly rounded float16 operation; numpy computes its half loops in
 * float32 and rounds to float16, the same result since 24 ≥ 2·11 + 2. A plain loop without the
 * kernel's tiles or SIMD: float16 models are rare.
 */
function averageFloat16(xs: readonly Uint16Array[], ws: Float64Array): Uint16Array {
  halfValues ??= Float64Array.from({ length: 1 << 16 }, (_, bits) => float16Value(bits));
  const value = halfValues;
  const x0 = xs[0] as Uint16Array;
  const w0 = half(ws[0] as number);
  const acc = new Float64Array(x0.length); // float16 values, held exactly
  for (let i = 0; i < acc.length; i++) acc[i] = half((value[x0[i] as number] as number) * w0);
  for (let k = 1; k < xs.length; k++) {
    const x = xs[k] as Uint16Array;
    const w = half(ws[k] as number);
    for (let i = 0; i < acc.length; i++)
      acc[i] = half((acc[i] as number) + half((value[x[i] as number] as number) * w));
  }
  return toFloat16(acc);
}

/** The same sum over integer arrays (int64 and uint64 read as the nearest float64). */
function averageIntegers(xs: readonly TypedArray[], ws: Float64Array): Float64Array {
  const out = new Float64Array((xs[0] as TypedArray).length);
  xs.forEach((x, k) => {
    const w = ws[k] as number;
    if (x instanceof BigInt64Array || x instanceof BigUint64Array)
      for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) + w * Number(x[i] as bigint);
    else {
      const small = x as Exclude<TypedArray, BigInt64Array | BigUint64Array>;
      for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) + w * (small[i] as number);
    }
  });
  return out;
}

/** Round half to even, as NumPy's `rint` (Math.round sends halves up). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The range of each integer dtype (bool is 0/1). */
const RANGE: Partial<Record<DType, readonly [bigint, bigint]>> = {
  int8: [-(2n ** 7n), 2n ** 7n - 1n],
  int16: [-(2n ** 15n), 2n ** 15n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint8: [0n, 2n ** 8n - 1n],
  uint16: [0n, 2n ** 16n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  bool: [0n, 1n],
};

/** Averages rounded and clipped into a new array of `dtype`. */
function toIntegers(dtype: DType, avg: Float64Array): TypedArray {
  const [lo, hi] = RANGE[dtype]!;
  const out = new DTYPES[dtype].ctor(new ArrayBuffer(avg.length * DTYPES[dtype].bytes), 0, avg.length);
  if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    for (let i = 0; i < avg.length; i++) {
      const v = BigInt(roundHalfEven(avg[i] as number));
      out[i] = v < lo ? lo : v > hi ? hi : v;
    }
  } else {
    const [min, max] = [Number(lo), Number(hi)];
    const small = out as Exclude<TypedArray, BigInt64Array | BigUint64Array>;
    for (let i = 0; i < avg.length; i++)
      small[i] = Math.min(max, Math.max(min, roundHalfEven(avg[i] as number)));
  }
  return out;
}

/**
 * The weighted average of one array across replies (same dtype and length in each), as the
 * file header describes; `ws` are normalised weights, `precision` matters to float16 only.
 * float32 goes through the kernel in aggregate.ts instead.
 */
export function averageOf(
  dtype: Exclude<DType, 'float32'>,
  xs: readonly TypedArray[],
  ws: Float64Array,
  precision: Precision = 'float32',
): TypedArray {
  if (dtype === 'float64') return average64(xs as Float64Array[], ws);
  if (dtype === 'float16') {
    const halves = xs as readonly Uint16Array[];
    if (precision === 'float32') return averageFloat16(halves, ws);
    return toFloat16(
      average64(
        halves.map((x) => Float64Array.from(x, (b) => float16Value(b))),
        ws,
      ),
    );
  }
  return toIntegers(dtype, averageIntegers(xs, ws));
}
