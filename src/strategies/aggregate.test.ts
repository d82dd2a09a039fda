import { describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { normalizeWeights, SMALL_LAYER, weightedAverage } from './aggregate.js';

const f32 = (...v: number[]) => Float32Array.from(v);

function reference(updates: { arrays: Float32Array[]; weight: number }[]): Float64Array[] {
  const total = updates.reduce((s, u) => s + u.weight, 0);
  return (updates[0]?.arrays ?? []).map((layer, l) => {
    const out = new Float64Array(layer.length);
    for (const u of updates) {
      const x = u.arrays[l] as Float32Array;
      for (let i = 0; i < x.length; i++) out[i] = (out[i] as number) + (u.weight / total) * (x[i] as number);
    }
    return out;
  });
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof PollenError ? e.code : 'not a PollenError';
  }
  return undefined;
}

describe('weightedAverage', () => {
  it('averages three updates weighted 10/20/70 (hand-computed)', () => {
    const out = weightedAverage([
      { arrays: [f32(1, 2), f32(10)], weight: 10 },
      { arrays: [f32(3, 4), f32(20)], weight: 20 },
      { arrays: [f32(5, 6), f32(30)], weight: 70 },
    ]);
    // 0.1·1 + 0.2·3 + 0.7·5 = 4.2; 0.1·2 + 0.2·4 + 0.7·6 = 5.2; 0.1·10 + 0.2·20 + 0.7·30 = 26
    expect(Array.from(out[0] as Float32Array)).toEqual([Math.fround(4.2), Math.fround(5.2)]);
    expect(Array.from(out[1] as Float32Array)).toEqual([26]);
  });

  it('returns a copy of the only update', () => {
    const x = f32(1.5, -2, 3);
    const [out] = weightedAverage([{ arrays: [x], weight: 7 }]);
    expect(out).not.toBe(x);
    expect(Array.from(out as Float32Array)).toEqual([1.5, -2, 3]);
  });

  it('writes into out when given, and accepts an input as out', () => {
    const a = f32(0, 4);
    const b = f32(2, 0);
    const out = [new Float32Array(2)];
    expect(
      weightedAverage(
        [
          { arrays: [a], weight: 1 },
          { arrays: [b], weight: 1 },
        ],
        out,
      ),
    ).toBe(out);
    expect(Array.from(out[0] as Float32Array)).toEqual([1, 2]);
    weightedAverage(
      [
        { arrays: [a], weight: 1 },
        { arrays: [b], weight: 3 },
      ],
      [a],
    );
    expect(Array.from(a)).toEqual([1.5, 1]);
  });

  it('matches a float64 reference on large layers for every group remainder (K = 1..9)', () => {
    const n = SMALL_LAYER + 12_345; // the fused kernel, plus a chunk tail and an unroll tail
    let seed = 1;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648 - 0.5;
    };
    for (let K = 1; K <= 9; K++) {
      const updates = Array.from({ length: K }, (_, k) => ({
        arrays: [Float32Array.from({ length: n }, () => rnd() * 100), Float32Array.from({ length: 5 }, rnd)],
        weight: k + 1 + rnd(),
      }));
      const got = weightedAverage(updates);
      const want = reference(updates);
      for (let l = 0; l < 2; l++) {
        const g = got[l] as Float32Array;
        const w = want[l] as Float64Array;
        let worst = 0;
        for (let i = 0; i < g.length; i++)
          worst = Math.max(worst, Math.abs((g[i] as number) - (w[i] as number)));
        expect(worst, `K=${K} layer ${l}`).toBeLessThan(l === 0 ? 1e-5 * 50 : 1e-7);
      }
    }
  });

  it('refuses mismatched layer counts and lengths, and a wrong out', () => {
    expect(
      code(() =>
        weightedAverage([
          { arrays: [f32(1)], weight: 1 },
          { arrays: [f32(1), f32(2)], weight: 1 },
        ]),
      ),
    ).toBe('INVALID_ARGUMENT');
    expect(
      code(() =>
        weightedAverage([
          { arrays: [f32(1, 2)], weight: 1 },
          { arrays: [f32(1)], weight: 1 },
        ]),
      ),
    ).toBe('INVALID_ARGUMENT');
    expect(code(() => weightedAverage([{ arrays: [f32(1, 2)], weight: 1 }], [new Float32Array(3)]))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(code(() => weightedAverage([{ arrays: [f32(1, 2)], weight: 1 }], []))).toBe('INVALID_ARGUMENT');
  });

  it('refuses no updates and weights that are zero, negative, NaN, infinite or overflow in sum', () => {
    expect(code(() => weightedAverage([]))).toBe('INVALID_ARGUMENT');
    for (const w of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(
        code(() => weightedAverage([{ arrays: [f32(1)], weight: w }])),
        String(w),
      ).toBe('INVALID_ARGUMENT');
    }
    expect(code(() => normalizeWeights([Number.MAX_VALUE, Number.MAX_VALUE]))).toBe('INVALID_ARGUMENT');
  });

  it('normalises weights once so huge weights do not overflow', () => {
    const [out] = weightedAverage([
      { arrays: [f32(1)], weight: 1e300 },
      { arrays: [f32(3)], weight: 1e300 },
    ]);
    expect(out?.[0]).toBe(2);
  });
});
