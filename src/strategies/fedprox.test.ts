import { describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { aggregateTrain, configureTrain, fedProxConfig, proximalTerm } from './fedprox.js';

const f32 = (...v: number[]) => Float32Array.from(v);

describe('FedProx', () => {
  it('sends proximalMu in the train config and keeps the FedAvg settings', () => {
    const config = fedProxConfig({ proximalMu: 0.1, fractionTrain: 0.5 });
    expect(config.fractionTrain).toBe(0.5);
    expect(config.minTrainNodes).toBe(2);
    expect(configureTrain(config, 3)).toEqual({ serverRound: 3, proximalMu: 0.1 });
  });

  it('refuses a negative or NaN mu', () => {
    expect(() => fedProxConfig({ proximalMu: -1 })).toThrow(PollenError);
    expect(() => fedProxConfig({ proximalMu: Number.NaN })).toThrow(PollenError);
    expect(() => proximalTerm([f32(1)], [f32(1)], -0.5)).toThrow(PollenError);
  });

  it('aggregates like FedAvg', () => {
    const r = aggregateTrain([
      { arrays: { w: f32(0) }, numExamples: 1, metrics: {} },
      { arrays: { w: f32(4) }, numExamples: 3, metrics: {} },
    ]);
    expect(Array.from(r.arrays.w as Float32Array)).toEqual([3]);
  });

  it('computes the proximal term and its gradient (hand-computed)', () => {
    // d = (1, -2, 0.5): ||d||² = 1 + 4 + 0.25 = 5.25; value = 0.2/2 · 5.25 = 0.525
    const { value, gradient } = proximalTerm([f32(2, 0), f32(1.5)], [f32(1, 2), f32(1)], 0.2);
    expect(value).toBeCloseTo(0.525, 6);
    expect(gradient).toHaveLength(2);
    expect(Array.from(gradient[0] as Float32Array)).toEqual([Math.fround(0.2), Math.fround(-0.4)]);
    expect(Array.from(gradient[1] as Float32Array)).toEqual([Math.fround(0.1)]);
  });

  it('accepts named layers and refuses mismatches', () => {
    const { value, gradient } = proximalTerm({ w: f32(3) }, { w: f32(1) }, 1);
    expect(value).toBe(2);
    expect(Array.from(gradient.w as Float32Array)).toEqual([2]);
    expect(() => proximalTerm({ w: f32(3) }, { v: f32(1) }, 1)).toThrow(PollenError);
    expect(() => proximalTerm([f32(3, 1)], [f32(1)], 1)).toThrow(PollenError);
    expect(() => proximalTerm([f32(3)], [f32(1), f32(2)], 1)).toThrow(PollenError);
  });
});
