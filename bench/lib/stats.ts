/** Small statistics helpers shared by the benches. Times are in milliseconds unless named. */

export interface Summary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    min: sorted.length ? sorted[0]! : Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

export function median(values: ArrayLike<number>): number {
  return percentile(Float64Array.from(values).sort(), 50);
}

/** a ÷ b, NaN when either is missing or b is 0. */
export function ratio(a: number | undefined, b: number | undefined): number {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0)
    return Number.NaN;
  return a / b;
}

/** Round for JSON output: keeps documents short and diffs readable. */
export function round(n: number, digits = 1): number {
  if (!Number.isFinite(n)) return n;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/**
 * A distribution-free confidence interval for the median (order statistics: the number of values
 * below the median is Binomial(n, ½)), covering it with probability ≥ `level` where n allows. With
 * fewer than 6 values even the whole range covers less than 95%: min and max are returned.
 */
export function medianInterval(values: ArrayLike<number>, level = 0.95): { low: number; high: number } {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) return { low: Number.NaN, high: Number.NaN };
  // P(X < k) for X ~ Binomial(n, ½), summed until the tail would exceed (1 - level) / 2.
  let k = 0;
  let tail = 0;
  let term = 0.5 ** n; // P(X = 0)
  while (k < n / 2) {
    if (2 * (tail + term) > 1 - level) break;
    tail += term;
    k++;
    term = (term * (n - k + 1)) / k;
  }
  // [x_(k), x_(n-k+1)] in 1-based ranks covers the median with probability ≥ level.
  const lo = Math.max(0, k - 1);
  return { low: sorted[lo]!, high: sorted[n - 1 - lo]! };
}
