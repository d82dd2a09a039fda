import { describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict } from '../sdk/index.js';
import { FedProx, fedProxConfig, proximalTerm } from './fedprox.js';

const f32 = (...v: number[]) => Float32Array.from(v);

describe('FedProx', () => {
  it('sends proximal-mu in the train config and keeps the FedAvg settings', () => {
    const config = fedProxConfig({ proximalMu: 0.1, fractionTrain: 0.5 });
    expect(config.fractionTrain).toBe(0.5);
    expect(config.minTrainNodes).toBe(2);
    const strategy = new FedProx({ proximalMu: 0.1, fractionTrain: 0.5 });
    expect(strategy.fractionTrain).toBe(0.5);
    expect(strategy.minTrainNodes).toBe(2);
    const arrays = ArrayRecord.fromArrays({ w: f32(1) });
    const messages = strategy.configureTrain(3, arrays, new ConfigRecord({ lr: 1 }), ['a', 'b', 'c', 'd']);
    expect(messages).toHaveLength(2);
    for (const m of messages)
      expect(m.content!.getConfigRecord('config')!.toObject()).toEqual({
        lr: 1,
        'proximal-mu': 0.1,
        'server-round': 3,
      });
    // evaluation messages carry no proximal term
    const [e] = strategy.configureEvaluate(3, arrays, new ConfigRecord(), ['a', 'b']);
    expect(e!.content!.getConfigRecord('config')!.toObject()).toEqual({ 'server-round': 3 });
  });

  it('refuses a negative or NaN mu', () => {
    expect(() => fedProxConfig({ proximalMu: -1 })).toThrow(PollenError);
    expect(() => fedProxConfig({ proximalMu: Number.NaN })).toThrow(PollenError);
    expect(() => new FedProx({ proximalMu: -1 })).toThrow(PollenError);
    expect(() => new FedProx({ proximalMu: Number.NaN })).toThrow(PollenError);
    expect(() => proximalTerm([f32(1)], [f32(1)], -0.5)).toThrow(PollenError);
  });

  it('aggregates like FedAvg', () => {
    const replies = [
      { w: 0, n: 1 },
      { w: 4, n: 3 },
    ].map(({ w, n }, i) =>
      Message.create({ dstNodeId: `${i}`, messageType: 'train', content: new RecordDict() }).createReply(
        new RecordDict({
          arrays: ArrayRecord.fromArrays({ w: f32(w) }),
          metrics: new MetricRecord({ 'num-examples': n }),
        }),
      ),
    );
    const r = new FedProx({ proximalMu: 0.1 }).aggregateTrain(1, replies);
    expect(Array.from(r.arrays.get('w')!.data as Float32Array)).toEqual([3]);
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
