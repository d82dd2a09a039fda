/**
 * Weighted averages of arrays of every dtype, each rule one NumPy repeats operation for
 * operation (so a Python strategy can give the same bytes):
 *
 * - float32: the kernel in aggregate.ts (Flower's float32 arithmetic by default).
 * - float64: summed in float64, reply by reply from the first term (`out = w_0 · x_0`, then
 *   `out += w_k · x_k`, weights normalised to 1): Flower's `aggregate_arrayrecords`, bit for bit.
 * - float16: widened to float32 (exact), averaged in the same kernel pass as the float32 arrays,
 *   rounded back to float16 (nearest, ties to even; src/sdk/float16.ts). Done in records.ts.
 * - integers: summed in float64 as float64 arrays are, then rounded to the nearest integer (ties
 *   to even, as NumPy's `rint`) and clipped to the dtype's range. Exact while the values and
 *   their weighted sums stay within 2^53 (int64 and uint64 beyond that lose their low bits).
 * - bool: as an integer 0/1, so the result is the weighted majority; a tie is false.
 */
import { DTYPES, type DType, type TypedArray } from '../sdk/records.js';

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
 * file header describes; `ws` are normalised weights. float32 and float16 (widened) go through
 * the kernel in aggregate.ts instead.
 */
export function averageOf(
  dtype: Exclude<DType, 'float32' | 'float16'>,
  xs: readonly TypedArray[],
  ws: Float64Array,
): TypedArray {
  if (dtype === 'float64') return average64(xs as Float64Array[], ws);
  return toIntegers(dtype, averageIntegers(xs, ws));
}
