import { describe, expect, it } from 'vitest';
import { everyDType } from '../../test/support/dtypes.js';
import { PollenError } from '../errors.js';
import {
  ArrayRecord,
  ConfigRecord,
  type DType,
  fromFloat16,
  Message,
  MetricRecord,
  type MetricValue,
  RecordDict,
  type TypedArray,
} from '../sdk/index.js';
import { FedAvg, fedAvgConfig, sampleNodes, seededRng } from './fedavg.js';
import { aggregateArrayRecords, aggregateMetrics, contentsOf, replyArrays } from './records.js';

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

type Arrays = Parameters<typeof ArrayRecord.fromArrays>[0];

/** A node's reply: its arrays (if any) and metrics, as a ClientApp would send them. */
function reply(nodeId: string, arrays: Arrays | undefined, metrics: Record<string, MetricValue>): Message {
  const content = new RecordDict({ metrics: new MetricRecord(metrics) });
  if (arrays !== undefined) content.set('arrays', ArrayRecord.fromArrays(arrays));
  return Message.create({ dstNodeId: nodeId, messageType: 'train', content: new RecordDict() }).createReply(
    content,
  );
}

const values = (record: ArrayRecord, name: string) => Array.from(record.get(name)!.data as Float32Array);

describe('FedAvg.aggregateTrain', () => {
  const fedavg = new FedAvg();
  const aggregate = (...replies: Message[]) => fedavg.aggregateTrain(1, replies);

  it('averages arrays and metrics of 3 clients with 10/20/70 examples (hand-computed)', () => {
    const r = aggregate(
      reply('1', { w: f32(1, 2), b: f32(0) }, { 'num-examples': 10, loss: 1, acc: 0.5 }),
      reply('2', { b: f32(10), w: f32(3, 4) }, { 'num-examples': 20, loss: 2, acc: 0.6 }),
      reply('3', { w: f32(5, 6), b: f32(-10) }, { 'num-examples': 70, loss: 3, acc: 0.9 }),
    );
    expect([...r.arrays.keys()]).toEqual(['w', 'b']);
    expect(values(r.arrays, 'w')).toEqual([Math.fround(4.2), Math.fround(5.2)]);
    expect(values(r.arrays, 'b')).toEqual([-5]); // 0 + 2 - 7
    expect(r.metrics.get('loss')).toBeCloseTo(2.6, 12); // 0.1 + 0.4 + 2.1
    expect(r.metrics.get('acc')).toBeCloseTo(0.8, 12); // 0.05 + 0.12 + 0.63
    expect(r.metrics.has('num-examples')).toBe(false); // the weight, not a metric to average
    expect(r.numExamples).toBe(100);
    expect(r.numReplies).toBe(3);
  });

  it('returns the single reply unchanged', () => {
    const r = aggregate(reply('1', { w: f32(1, -1) }, { 'num-examples': 3, loss: 0.25 }));
    expect(values(r.arrays, 'w')).toEqual([1, -1]);
    expect(r.metrics.toObject()).toEqual({ loss: 0.25 });
  });

  it('averages a metric over the replies that report it, and lists element by element', () => {
    const r = aggregate(
      reply('1', { w: f32(0) }, { 'num-examples': 1, loss: 1, per: [1, 0] }),
      reply('2', { w: f32(0) }, { 'num-examples': 3, loss: 2, extra: 7, per: [0, 1] }),
    );
    expect(r.metrics.toObject()).toEqual({ loss: 1.75, extra: 7, per: [0.25, 0.75] });
  });

  it('skips error replies', () => {
    const failed = Message.create({ dstNodeId: '2', messageType: 'train', content: new RecordDict() });
    const r = aggregate(
      reply('1', { w: f32(2) }, { 'num-examples': 1 }),
      failed.createErrorReply({ code: 'CLIENT_APP_RAISED_EXCEPTION', reason: 'boom' }),
    );
    expect(values(r.arrays, 'w')).toEqual([2]);
    expect(r.numReplies).toBe(1);
  });

  it("keeps each array's dtype and shape: float64 is averaged in float64", () => {
    const a = ArrayRecord.fromArrays({
      k: { data: f32(1, 2, 3, 4), shape: [2, 2] },
      d: Float64Array.of(0.1),
    });
    const b = ArrayRecord.fromArrays({
      k: { data: f32(3, 4, 5, 6), shape: [2, 2] },
      d: Float64Array.of(0.2),
    });
    const replies = [a, b].map((arrays, i) =>
      Message.create({ dstNodeId: `${i}`, messageType: 'train', content: new RecordDict() }).createReply(
        new RecordDict({ arrays, metrics: new MetricRecord({ 'num-examples': 1 }) }),
      ),
    );
    const r = fedavg.aggregateTrain(1, replies);
    expect(r.arrays.get('k')).toMatchObject({ dtype: 'float32', shape: [2, 2] });
    expect(values(r.arrays, 'k')).toEqual([2, 3, 4, 5]);
    const d = r.arrays.get('d', 'float64')!;
    expect(d.shape).toEqual([1]);
    expect(d.data).toBeInstanceOf(Float64Array);
    expect(d.data[0]).toBe(0.5 * 0.1 + 0.5 * 0.2); // not rounded through float32
  });

  it('refuses zero or NaN examples, no replies, mismatched names or shapes, NaN metrics', () => {
    const ok = reply('1', { w: f32(1, 2) }, { 'num-examples': 1 });
    const bad = (arrays: Arrays | undefined, metrics: Record<string, MetricValue> = { 'num-examples': 1 }) =>
      error(() => aggregate(ok, reply('2', arrays, metrics)))?.code;
    expect(bad({ w: f32(1, 2) }, { 'num-examples': 0 })).toBe('INVALID_ARGUMENT');
    expect(bad({ w: f32(1, 2) }, { examples: 1 })).toBe('INVALID_ARGUMENT');
    expect(error(() => aggregateMetrics([{ numExamples: Number.NaN, metrics: {} }]))?.code).toBe(
      'INVALID_ARGUMENT',
    );
    expect(error(() => aggregate())?.code).toBe('INVALID_ARGUMENT');
    expect(bad({ v: f32(1, 2) })).toBe('INVALID_ARGUMENT');
    expect(bad({ w: f32(1, 2), v: f32(1) })).toBe('INVALID_ARGUMENT');
    expect(bad({ w: f32(1, 2, 3) })).toBe('INVALID_ARGUMENT');
    expect(bad({ w: Float64Array.of(1, 2) })).toBe('INVALID_ARGUMENT');
    expect(bad(undefined)).toBe('INVALID_ARGUMENT'); // no ArrayRecord
    expect(
      error(() => aggregate(ok, reply('2', { w: Int32Array.of(1, 2) }, { 'num-examples': 1 })))?.message,
    ).toMatch(/Array "w" is int32|reply 0 sends float32/);
    expect(
      error(() =>
        aggregateMetrics([
          { numExamples: 1, metrics: {} },
          { numExamples: 1, metrics: { loss: Number.NaN } },
        ]),
      )?.code,
    ).toBe('INVALID_ARGUMENT');
  });

  /** The aggregate of one array `x` sent by each reply with these example counts. */
  // The averaging step by dtype, without FedAvg's rule that leaves out replies holding NaN or Inf
  // (whose float16 rounding these tests also check).
  const averagedRecords = (replies: Message[]) => {
    const ok = contentsOf(replies);
    return aggregateArrayRecords(
      ok,
      ok.map(replyArrays),
      ok.map((r) => r.content.getMetricRecord('metrics')!.get('num-examples') as number),
    );
  };
  const averaged = (dtype: DType, sent: TypedArray[], examples: number[]) =>
    averagedRecords(
      sent.map((data, k) => reply(String(k), { x: { data, dtype } }, { 'num-examples': examples[k]! })),
    ).get('x')!;

  it('averages float16 in float16 arithmetic, each step rounded to the nearest float16, ties to even', () => {
    const half = (...bits: number[]) => Uint16Array.from(bits);
    // 1 and 2 weighted 1:3 → 1.75; 1 and its successor 1 + 2^-10 → the tie 1 + 2^-11 → 1 (even);
    // 65504 and +inf → inf; the smallest subnormal and 0 → a tie → 0; -2 and -2 → -2.
    const r = averaged(
      'float16',
      [half(0x3c00, 0x3c00, 0x7bff, 0x0001, 0xc000), half(0x4000, 0x3c01, 0x7c00, 0x0000, 0xc000)],
      [1, 1],
    );
    expect(r.dtype).toBe('float16');
    expect(r.data).toBeInstanceOf(Uint16Array);
    expect([...r.data].map((b) => Number(b).toString(16))).toEqual(['3e00', '3c00', '7c00', '0', 'c000']);
    const weighted = averaged('float16', [half(0x3c00), half(0x4000)], [1, 3]);
    expect(fromFloat16(weighted.data as Uint16Array)[0]).toBe(1.75);
  });

  it('averages integer arrays in float64 and rounds to the nearest integer, ties to even, within range', () => {
    const cases: [DType, TypedArray[], number[], unknown[]][] = [
      ['int8', [Int8Array.of(-128, 3, 2, -3), Int8Array.of(127, 4, 3, -2)], [1, 1], [0, 4, 2, -2]],
      ['int16', [Int16Array.of(-32768, 10), Int16Array.of(-32768, 20)], [1, 3], [-32768, 18]],
      ['int32', [Int32Array.of(2 ** 31 - 1, 0), Int32Array.of(2 ** 31 - 1, 7)], [2, 1], [2 ** 31 - 1, 2]],
      ['uint8', [Uint8Array.of(255, 0), Uint8Array.of(255, 1)], [1, 1], [255, 0]],
      ['uint16', [Uint16Array.of(65535, 100), Uint16Array.of(0, 300)], [1, 1], [32768, 200]],
      ['uint32', [Uint32Array.of(2 ** 32 - 1, 5), Uint32Array.of(2 ** 32 - 1, 6)], [1, 1], [2 ** 32 - 1, 6]],
      // 2^63 - 1 and 2^64 - 1 are rounded to float64 (2^63, 2^64), then clipped into range.
      [
        'int64',
        [BigInt64Array.of(2n ** 63n - 1n, -5n), BigInt64Array.of(2n ** 63n - 1n, 5n)],
        [1, 1],
        [2n ** 63n - 1n, 0n],
      ],
      [
        'uint64',
        [BigUint64Array.of(2n ** 64n - 1n, 2n ** 40n), BigUint64Array.of(2n ** 64n - 1n, 0n)],
        [1, 1],
        [2n ** 64n - 1n, 2n ** 39n],
      ],
    ];
    for (const [dtype, sent, examples, expected] of cases) {
      const r = averaged(dtype, sent, examples);
      expect({ dtype: r.dtype, values: [...r.data] }).toEqual({ dtype, values: expected });
      expect(r.data.constructor).toBe(sent[0]!.constructor);
    }
  });

  it('takes the weighted majority of bool arrays; a tie is false', () => {
    const b = (...v: number[]) => Uint8Array.from(v);
    const r = averaged('bool', [b(1, 1, 0, 1), b(1, 0, 1, 0), b(0, 0, 1, 0)], [1, 1, 2]);
    // weights 1/4, 1/4, 1/2: 0.5 (tie) → 0; 0.25 → 0; 0.75 → 1; 0.25 → 0
    expect({ dtype: r.dtype, values: [...r.data] }).toEqual({ dtype: 'bool', values: [0, 0, 1, 0] });
    expect([...averaged('bool', [b(1), b(0)], [3, 2]).data]).toEqual([1]);
  });

  it('averages every dtype in one aggregation, keeping names, order, dtypes and shapes', () => {
    const arrays = everyDType();
    const replyWith = (n: number) =>
      Message.create({ dstNodeId: String(n), messageType: 'train', content: new RecordDict() }).createReply(
        new RecordDict({ arrays, metrics: new MetricRecord({ 'num-examples': n }) }),
      );
    const r = averagedRecords([replyWith(1), replyWith(3)]);
    expect([...r].map(([n, e]) => [n, e.dtype, e.shape, e.data.constructor])).toEqual(
      [...arrays].map(([n, e]) => [n, e.dtype, e.shape, e.data.constructor]),
    );
    // Equal replies average to themselves where float64 holds the values exactly (−0 included:
    // the sum starts from the first term, as numpy's reductions do).
    expect([...r.get('int8/matrix')!.data]).toEqual([...arrays.get('int8/matrix')!.data]);
    expect([...r.get('bool/matrix')!.data]).toEqual([...arrays.get('bool/matrix')!.data]);
    expect([...r.get('float16/matrix')!.data]).toEqual(
      [...arrays.get('float16/matrix')!.data].map((b) => (b === 0x7e01 ? 0x7e00 : b)),
    );
  });
});

describe('FedAvg.aggregateTrain: replies holding NaN or Inf', () => {
  it('leaves them out of float32 and float64 arrays and names their nodes (float16 is averaged as it comes)', () => {
    const h = (bits: number) => ({ data: Uint16Array.of(bits), dtype: 'float16' as const });
    const r = new FedAvg().aggregateTrain(1, [
      reply('1', { x: Float32Array.of(1, 2), y: Float64Array.of(1), h: h(0x3c00) }, { 'num-examples': 1 }),
      reply('2', { x: Float32Array.of(3, 4), y: Float64Array.of(3), h: h(0x7c00) }, { 'num-examples': 3 }),
      reply(
        '3',
        { x: Float32Array.of(Number.POSITIVE_INFINITY, 0), y: Float64Array.of(0), h: h(0x3c00) },
        { 'num-examples': 1 },
      ),
      reply(
        '4',
        { x: Float32Array.of(0, 0), y: Float64Array.of(Number.NaN), h: h(0x3c00) },
        { 'num-examples': 1 },
      ),
    ]);
    expect(Array.from(r.arrays.get('x')!.data as Float32Array)).toEqual([2.5, 3.5]);
    expect(Array.from(r.arrays.get('y')!.data as Float64Array)).toEqual([2.5]);
    expect(fromFloat16(r.arrays.get('h')!.data as Uint16Array)[0]).toBe(Number.POSITIVE_INFINITY);
    expect(r.failures?.map((f) => `${f.nodeId} ${f.code} ${f.reason}`)).toEqual([
      '3 UPDATE_NOT_FINITE Array "x" holds NaN or Inf: the reply is left out of the aggregate',
      '4 UPDATE_NOT_FINITE Array "y" holds NaN or Inf: the reply is left out of the aggregate',
    ]);
    expect(r.numReplies).toBe(2);
  });
});

describe('FedAvg.aggregateEvaluate', () => {
  it('weights metrics by examples', () => {
    const r = new FedAvg().aggregateEvaluate(1, [
      reply('1', undefined, { 'num-examples': 10, loss: 0.5, accuracy: 0.9 }),
      reply('2', undefined, { 'num-examples': 30, loss: 1.5, accuracy: 0.7 }),
    ]);
    expect(r.metrics.get('loss')).toBeCloseTo(1.25, 12);
    expect(r.metrics.get('accuracy')).toBeCloseTo(0.75, 12);
    expect(r.numExamples).toBe(40);
  });

  it('weighs by the configured key', () => {
    const r = new FedAvg({ weightedByKey: 'n' }).aggregateEvaluate(1, [
      reply('1', undefined, { n: 1, loss: 1 }),
      reply('2', undefined, { n: 3, loss: 2 }),
    ]);
    expect(r.metrics.toObject()).toEqual({ loss: 1.75 });
  });
});

describe('FedAvg.configureTrain / configureEvaluate', () => {
  const arrays = ArrayRecord.fromArrays({ w: f32(1, 2) });
  const nodes = ['1', '2', '3', '4'];

  it('sends the arrays and a copy of the config with server-round to the sampled nodes', () => {
    const config = new ConfigRecord({ lr: 0.1 });
    const strategy = new FedAvg({ fractionTrain: 0.5, rng: seededRng(1) });
    const messages = strategy.configureTrain(3, arrays, config, nodes);
    expect(messages).toHaveLength(2);
    expect(new Set(messages.map((m) => m.metadata.dstNodeId)).size).toBe(2);
    for (const m of messages) {
      expect(m.metadata).toMatchObject({ messageType: 'train', groupId: '3', srcNodeId: '0' });
      expect(m.content!.getArrayRecord('arrays')).toBe(arrays);
      expect(m.content!.getConfigRecord('config')!.toObject()).toEqual({ lr: 0.1, 'server-round': 3 });
    }
    expect(config.toObject()).toEqual({ lr: 0.1 }); // the caller's record is not changed
  });

  it('uses the configured record names, and fractionEvaluate 0 skips evaluation', () => {
    const strategy = new FedAvg({ arrayRecordKey: 'model', configRecordKey: 'cfg', minEvaluateNodes: 1 });
    const [m] = strategy.configureEvaluate(1, arrays, new ConfigRecord(), nodes);
    expect(m!.metadata.messageType).toBe('evaluate');
    expect([...m!.content!.keys()]).toEqual(['model', 'cfg']);
    expect(
      new FedAvg({ fractionEvaluate: 0 }).configureEvaluate(1, arrays, new ConfigRecord(), nodes),
    ).toEqual([]);
  });

  it('throws UNAVAILABLE with too few nodes, and refuses bad options', () => {
    expect(error(() => new FedAvg().configureTrain(1, arrays, new ConfigRecord(), ['1']))?.code).toBe(
      'UNAVAILABLE',
    );
    expect(error(() => new FedAvg({ fractionTrain: 2 }))?.code).toBe('INVALID_ARGUMENT');
    expect(error(() => new FedAvg({ weightedByKey: '' }))?.code).toBe('INVALID_ARGUMENT');
    expect(error(() => new FedAvg({ arrayRecordKey: 'config' }))?.code).toBe('INVALID_ARGUMENT');
    expect(new FedAvg({ minTrainNodes: undefined }).minTrainNodes).toBe(2);
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
