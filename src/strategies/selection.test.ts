/**
 * The robust strategies' selection (quickselect for medians, insertion sort for Bulyan's
 * nearest-to-median order) gives exactly what the full sorts they replaced gave.
 */
import { describe, expect, it } from 'vitest';
import { nearestFirst } from './bulyan.js';
import { median } from './elementwise.js';
import { seededRng } from './fedavg.js';

/** The median as it was: a full sort, then the middle (or the mean of the two middle ones). */
function sortedMedian(values: Float64Array): number {
  const v = values.slice().sort();
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

/** Random values with many ties and zeros of both signs, the cases a selection gets wrong first. */
function awkward(rng: () => number, n: number): Float64Array {
  return Float64Array.from({ length: n }, () => {
    const r = rng();
    if (r < 0.15) return -0;
    if (r < 0.3) return 0;
    if (r < 0.5) return Math.floor(rng() * 4) - 2; // ties
    return (rng() - 0.5) * 1e3;
  });
}

describe('median by selection', () => {
  it('gives the bits of the sorted median for odd and even counts, ties and ±0 (5,000 cases)', () => {
    const rng = seededRng(42);
    for (let c = 0; c < 5000; c++) {
      const n = 1 + (c % 23);
      const values = awkward(rng, n);
      const expected = sortedMedian(values);
      const got = median(values.slice());
      expect(Object.is(got, expected), `${Array.from(values)} → ${got}, sort gives ${expected}`).toBe(true);
    }
  });

  it('handles all-equal values, one value and already sorted input', () => {
    expect(median(Float64Array.from([3, 3, 3, 3]))).toBe(3);
    expect(median(Float64Array.from([7]))).toBe(7);
    expect(Object.is(median(Float64Array.from([-0, -0, 0])), -0)).toBe(true);
    expect(Object.is(median(Float64Array.from([-0, 0, 0])), 0)).toBe(true);
    expect(median(Float64Array.from({ length: 100 }, (_, i) => i))).toBe(49.5);
  });
});

describe("Bulyan's nearest-to-median order", () => {
  it('is the comparator sort it replaced, ties to the earlier index (2,000 cases)', () => {
    const rng = seededRng(7);
    for (let c = 0; c < 2000; c++) {
      const n = 1 + (c % 40);
      const distance = Float64Array.from({ length: n }, () => (rng() < 0.4 ? Math.floor(rng() * 3) : rng()));
      const order = new Int32Array(n);
      nearestFirst(order, distance);
      const expected = Array.from({ length: n }, (_, k) => k).sort(
        (a, b) => (distance[a] as number) - (distance[b] as number) || a - b,
      );
      expect(Array.from(order)).toEqual(expected);
    }
  });
});
