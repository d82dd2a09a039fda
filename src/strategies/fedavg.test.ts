import { describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { aggregateEvaluate, aggregateTrain, fedAvgConfig, sampleNodes, seededRng } from './fedavg.js';

const f32 = (...v: number[]) => Float32Array.from(v);

function error(fn: () => unknown): PollenError | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof PollenError) return e;
    throw e;
  }
  return undefined;
}

describe('aggregateTrain', () => {
  it('averages arrays and metrics of 3 clients with 10/20/70 examples (hand-computed)', () => {
    const r = aggregateTrain([
      { arrays: { w: f32(1, 2), b: f32(0) }, numExamples: 10, metrics: { loss: 1, acc: 0.5 } },
      { arrays: { b: f32(10), w: f32(3, 4) }, numExamples: 20, metrics: { loss: 2, acc: 0.6 } },
      { arrays: { w: f32(5, 6), b: f32(-10) }, numExamples: 70, metrics: { loss: 3, acc: 0.9 } },
    ]);
    expect(Object.keys(r.arrays)).toEqual(['w', 'b']);
    expect(Array.from(r.arrays.w as Float32Array)).toEqual([Math.fround(4.2), Math.fround(5.2)]);
    expect(Array.from(r.arrays.b as Float32Array)).toEqual([-5]); // 0 + 2 - 7
    expect(r.metrics.loss).toBeCloseTo(2.6, 12); // 0.1 + 0.4 + 2.1
    expect(r.metrics.acc).toBeCloseTo(0.8, 12); // 0.05 + 0.12 + 0.63
    expect(r.numExamples).toBe(100);
    expect(r.numReplies).toBe(3);
  });

  it('returns the single reply unchanged', () => {
    const r = aggregateTrain([{ arrays: { w: f32(1, -1) }, numExamples: 3, metrics: { loss: 0.25 } }]);
    expect(Array.from(r.arrays.w as Float32Array)).toEqual([1, -1]);
    expect(r.metrics).toEqual({ loss: 0.25 });
  });

  it('averages a metric over the replies that report it', () => {
    const r = aggregateTrain([
      { arrays: { w: f32(0) }, numExamples: 1, metrics: { loss: 1 } },
      { arrays: { w: f32(0) }, numExamples: 3, metrics: { loss: 2, extra: 7 } },
    ]);
    expect(r.metrics).toEqual({ loss: 1.75, extra: 7 });
  });

  it('refuses zero or NaN examples, no replies, mismatched names or shapes, NaN metrics', () => {
    const ok = { arrays: { w: f32(1, 2) }, numExamples: 1, metrics: {} };
    expect(error(() => aggregateTrain([ok, { ...ok, numExamples: 0 }]))?.code).toBe('INVALID_ARGUMENT');
    expect(error(() => aggregateTrain([ok, { ...ok, numExamples: Number.NaN }]))?.code).toBe(
      'INVALID_ARGUMENT',
    );
    expect(error(() => aggregateTrain([]))?.code).toBe('INVALID_ARGUMENT');
    expect(error(() => aggregateTrain([ok, { ...ok, arrays: { v: f32(1, 2) } }]))?.code).toBe(
      'INVALID_ARGUMENT',
    );
    expect(error(() => aggregateTrain([ok, { ...ok, arrays: { w: f32(1, 2), v: f32(1) } }]))?.code).toBe(
      'INVALID_ARGUMENT',
    );
    expect(error(() => aggregateTrain([ok, { ...ok, arrays: { w: f32(1, 2, 3) } }]))?.code).toBe(
      'INVALID_ARGUMENT',
    );
    expect(error(() => aggregateTrain([ok, { ...ok, metrics: { loss: Number.NaN } }]))?.code).toBe(
      'INVALID_ARGUMENT',
    );
  });
});

describe('aggregateEvaluate', () => {
  it('weights metrics by examples', () => {
    const r = aggregateEvaluate([
      { numExamples: 10, metrics: { loss: 0.5, accuracy: 0.9 } },
      { numExamples: 30, metrics: { loss: 1.5, accuracy: 0.7 } },
    ]);
    expect(r.metrics.loss).toBeCloseTo(1.25, 12);
    expect(r.metrics.accuracy).toBeCloseTo(0.75, 12);
    expect(r.numExamples).toBe(40);
  });
});

describe('fedAvgConfig', () => {
  it('has Flower-like defaults and refuses bad values', () => {
    expect(fedAvgConfig()).toEqual({
      fractionTrain: 1,
      fractionEvaluate: 1,
      minTrainNodes: 2,
      minEvaluateNodes: 2,
      minAvailableNodes: 2,
    });
    expect(error(() => fedAvgConfig({ fractionTrain: 1.5 }))?.code).toBe('INVALID_ARGUMENT');
    expect(error(() => fedAvgConfig({ fractionEvaluate: Number.NaN }))?.code).toBe('INVALID_ARGUMENT');
    expect(error(() => fedAvgConfig({ minTrainNodes: 1.5 }))?.code).toBe('INVALID_ARGUMENT');
    expect(error(() => fedAvgConfig({ minAvailableNodes: -1 }))?.code).toBe('INVALID_ARGUMENT');
  });
});

describe('sampleNodes', () => {
  const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);

  it('samples floor(available · fraction) distinct nodes, reproducibly with a seed', () => {
    const config = fedAvgConfig({ fractionTrain: 0.5 });
    const a = sampleNodes(nodes, config, seededRng(42));
    expect(a).toHaveLength(5);
    expect(new Set(a).size).toBe(5);
    for (const n of a) expect(nodes).toContain(n);
    expect(sampleNodes(nodes, config, seededRng(42))).toEqual(a);
    expect(sampleNodes(nodes, config, seededRng(7))).not.toEqual(a);
  });

  it('raises the sample to the minimum', () => {
    const config = fedAvgConfig({ fractionTrain: 0.1, minTrainNodes: 3 });
    expect(sampleNodes(nodes, config, seededRng(1))).toHaveLength(3);
  });

  it('samples every node uniformly over many draws', () => {
    const config = fedAvgConfig({ fractionTrain: 0.3 });
    const rng = seededRng(3);
    const counts = new Map<string, number>();
    for (let r = 0; r < 2000; r++)
      for (const n of sampleNodes(nodes, config, rng)) counts.set(n, (counts.get(n) ?? 0) + 1);
    for (const n of nodes) expect(counts.get(n)).toBeGreaterThan(500); // expected 600
    for (const n of nodes) expect(counts.get(n)).toBeLessThan(700);
  });

  it('uses the evaluate settings, and 0 skips evaluation', () => {
    const config = fedAvgConfig({ fractionEvaluate: 0.2, minEvaluateNodes: 1 });
    expect(sampleNodes(nodes, config, seededRng(1), 'evaluate')).toHaveLength(2);
    expect(sampleNodes(nodes, { ...config, fractionEvaluate: 0 }, seededRng(1), 'evaluate')).toEqual([]);
  });

  it('fails with UNAVAILABLE when too few nodes are available', () => {
    const e = error(() => sampleNodes(['a', 'b'], fedAvgConfig({ minAvailableNodes: 3 }), seededRng(1)));
    expect(e?.code).toBe('UNAVAILABLE');
    expect(e?.data).toEqual({ available: 2, required: 3, phase: 'train' });
    expect(
      error(() => sampleNodes(['a', 'b'], fedAvgConfig({ minTrainNodes: 3, minAvailableNodes: 1 })))?.code,
    ).toBe('UNAVAILABLE');
  });

  it('refuses duplicate node ids', () => {
    expect(error(() => sampleNodes(['a', 'a', 'b'], fedAvgConfig()))?.code).toBe('INVALID_ARGUMENT');
  });
});
