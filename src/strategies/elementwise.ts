/**
 * Element-wise helpers for the strategies that do more than a weighted average (server
 * optimisers, median, trimmed mean, Bulyan): every array is float32 or float64, the arithmetic is
 * done in float64, and each result is written in the dtype and shape of its input.
 */
import { type ArrayEntry, ArrayRecord, PollenError } from '../sdk/index.js';

export type FloatData = Float32Array | Float64Array;

/**
 * INVALID_ARGUMENT unless every array of `record` is float32 or float64: the strategies beyond
 * FedAvg compute on those only (FedAvg also averages float16, integer and bool arrays).
 */
export function checkFloatArrays(record: ArrayRecord, strategy: string): void {
  for (const [name, { dtype }] of record)
    if (dtype !== 'float32' && dtype !== 'float64')
      throw new PollenError(
        'INVALID_ARGUMENT',
        `Array "${name}" is ${dtype}: ${strategy} takes float32 and float64 arrays`,
        {
          hint: 'Send the model as float32 or float64 arrays, and counters in a MetricRecord; FedAvg averages the other dtypes.',
        },
      );
}

/** The data of array `name` of a record checked to hold float32 or float64 arrays. */
export function data(record: ArrayRecord, name: string): FloatData {
  return record.get(name)!.data as FloatData;
}

/** Zeros in the dtype and length of `entry`. */
export function zerosLike(entry: ArrayEntry): FloatData {
  return entry.dtype === 'float64'
    ? new Float64Array(entry.data.length)
    : new Float32Array(entry.data.length);
}

/**
 * A record with the names, dtypes and shapes of `template`, each array filled by `fill(name,
 * out)` (out starts as zeros).
 */
export function mapArrays(template: ArrayRecord, fill: (name: string, out: FloatData) => void): ArrayRecord {
  const out = new ArrayRecord();
  for (const [name, entry] of template) {
    const o = zerosLike(entry);
    fill(name, o);
    out.set(name, { dtype: entry.dtype, shape: entry.shape, data: o });
  }
  return out;
}

/**
 * Per element of every array: the K replies' values (in reply order, in float64) reduced to one
 * by `reduce`, which may reorder its argument.
 */
export function coordinatewise(
  records: readonly ArrayRecord[],
  reduce: (values: Float64Array) => number,
): ArrayRecord {
  const values = new Float64Array(records.length);
  return mapArrays(records[0] as ArrayRecord, (name, out) => {
    const xs = records.map((r) => data(r, name));
    for (let i = 0; i < out.length; i++) {
      for (let k = 0; k < xs.length; k++) values[k] = (xs[k] as FloatData)[i] as number;
      out[i] = reduce(values);
    }
  });
}

/**
 * The median of `values` (reordered in place); the mean of the two middle ones for an even count.
 * By selection (Hoare's quickselect, O(n)) rather than a full sort: the same bits as sorting
 * (`Float64Array.prototype.sort`, where -0 comes before +0) for finite values.
 */
export function median(values: Float64Array): number {
  const n = values.length;
  const mid = n >> 1;
  const upper = sortedAt(values, select(values, mid), mid);
  if (n % 2 === 1) return upper;
  // After selection the lower half holds the smaller values: the lower middle is their maximum.
  let lower = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < mid; i++) if ((values[i] as number) > lower) lower = values[i] as number;
  return (sortedAt(values, lower, mid - 1) + upper) / 2;
}

/** Moves the value of rank k (0-based, ascending) to index k and returns it; values must be finite. */
function select(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const pivot = a[(lo + hi) >> 1] as number;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while ((a[i] as number) < pivot) i++;
      while ((a[j] as number) > pivot) j--;
      if (i <= j) {
        const t = a[i] as number;
        a[i] = a[j] as number;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k] as number;
}

/**
 * `value` as a sort would have it at rank k: comparisons cannot tell -0 from +0, a sort puts every
 * -0 first, so a zero at rank k is -0 exactly when more than k values are negative or -0.
 */
function sortedAt(values: Float64Array, value: number, k: number): number {
  if (value !== 0) return value;
  let below = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (v < 0 || Object.is(v, -0)) below++;
  }
  return below > k ? -0 : 0;
}

/**
 * INVALID_ARGUMENT unless `record` has the names, dtypes and shapes of `current` (the global
 * arrays the replies started from).
 */
export function checkLikeCurrent(current: ArrayRecord, record: ArrayRecord, what: string): void {
  const same =
    current.size === record.size &&
    [...current].every(([name, e]) => {
      const r = record.get(name);
      return r !== undefined && r.dtype === e.dtype && r.shape.join() === e.shape.join();
    });
  if (!same) {
    const list = (a: ArrayRecord) =>
      [...a].map(([n, e]) => `${n}: ${e.dtype} [${e.shape.join(', ')}]`).join('; ');
    throw new PollenError(
      'INVALID_ARGUMENT',
      `${what} has arrays {${list(record)}}, the global arrays {${list(current)}}`,
      {
        hint: 'Every node must send back arrays with the names, dtypes and shapes of the global arrays it was sent.',
      },
    );
  }
}

/** The strategy's state needs `current` (set by configureTrain or loadState). */
export function requireCurrent(current: ArrayRecord | undefined, strategy: string): ArrayRecord {
  if (current === undefined)
    throw new PollenError(
      'STRATEGY_STATE_MISSING',
      `${strategy} has no global arrays to apply the round's update to`,
    );
  return current;
}
