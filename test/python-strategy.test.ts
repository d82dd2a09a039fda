/**
 * The Python FedAvg gives the TypeScript FedAvg's result on the same inputs, bit for bit: both
 * sum as Flower does (float32 arrays in float32, float64 in float64, reply by reply) and round at
 * the same points (aggregate.ts, average-dtypes.ts,
 * sdk/python/pollen/strategy/aggregate.py). Cases cover 1-9 replies (every remainder of the
 * WebAssembly kernel's groups of four), small and large float32 layers, float64 layers, odd weights, metrics,
 * and every other dtype: float16 ties, subnormals and infinities, integers at the edges of their
 * range (int64 and uint64 past 2^53, where the float64 sum rounds to 2^63 and 2^64), bool ties;
 * and the rule for NaN and ±Inf: the same replies left out with the same failures, or the same
 * UPDATE_NOT_FINITE refusal when none is left.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ArrayRecord,
  Message,
  MetricRecord,
  PollenError,
  RecordDict,
  type TypedArray,
  toFloat16,
} from '../src/sdk/index.js';
import { decodeNpz, encodeNpz } from '../src/sdk/npz.js';
import { DTYPES } from '../src/sdk/records.js';
import { FedAvg, seededRng, type TrainAggregate } from '../src/strategies/index.js';
import { PYTHON } from './support/python.js';

const SDK = join(import.meta.dirname, '..', 'sdk', 'python');
const COUNTS = [1, 2, 3, 4, 5, 6, 7, 9];

// Reads case folders (reply-K.npz + weights.json), writes out.npz and metrics.json beside them.
const SCRIPT = `
import json, sys, os
import numpy as np
from pollen import ArrayRecord, FedAvg, Message, MetricRecord, PollenError, RecordDict
for folder in sys.argv[1:]:
    spec = json.load(open(os.path.join(folder, "replies.json")))
    instruction = Message(RecordDict(), dst_node_id="1", message_type="train")
    replies = []
    for k, r in enumerate(spec):
        arrays = np.load(os.path.join(folder, f"reply-{k}.npz"))
        content = RecordDict({
            "arrays": ArrayRecord({name: arrays[name] for name in r["names"]}),
            "metrics": MetricRecord(r["metrics"]),
        })
        replies.append(Message(content, reply_to=instruction.with_metadata(dst_node_id=str(k + 1))))
    strategy = FedAvg()
    try:
        arrays, metrics = strategy.aggregate_train(1, replies)
    except PollenError as e:
        open(os.path.join(folder, "refused.txt"), "w").write(str(e))
        continue
    failures = [[f.node_id, f.message_type, f.code, f.reason] for f in strategy.train_failures()]
    json.dump(failures, open(os.path.join(folder, "failures.json"), "w"))
    np.savez(os.path.join(folder, "out.npz"), **{n: a.numpy() for n, a in arrays.items()})
    json.dump(dict(metrics), open(os.path.join(folder, "metrics.json"), "w"))
`;

function randomArrays(rng: () => number): ArrayRecord {
  const f32 = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rng() - 0.5) * scale);
  return ArrayRecord.fromArrays({
    big: { data: f32(70_001, 3), shape: [70_001] },
    small: { data: f32(1000, 1e-3), shape: [10, 100] },
    wide: f32(300, 1e6),
    d: Float64Array.from({ length: 50 }, () => (rng() - 0.5) * 7),
  });
}

interface Reply {
  arrays: ArrayRecord;
  weight: number;
  metrics: Record<string, number | number[]>;
}

interface Case {
  folder: string;
  /** The TypeScript FedAvg's result, or its refusal (`CODE: message`). */
  expected: TrainAggregate | string;
}

/** Writes one case folder for SCRIPT; returns it with the TypeScript FedAvg's result. */
function writeCase(folder: string, replies: readonly Reply[]): Case {
  mkdirSync(folder);
  const messages = replies.map(({ arrays, metrics }, k) => {
    writeFileSync(join(folder, `reply-${k}.npz`), Buffer.concat(encodeNpz(arrays)));
    const instruction = Message.create({
      dstNodeId: String(k + 1),
      messageType: 'train',
      content: new RecordDict(),
    });
    return instruction.createReply(new RecordDict({ arrays, metrics: new MetricRecord(metrics) }));
  });
  const spec = replies.map(({ arrays, metrics }) => ({ names: [...arrays.keys()], metrics }));
  writeFileSync(join(folder, 'replies.json'), JSON.stringify(spec));
  try {
    return { folder, expected: new FedAvg().aggregateTrain(1, messages) };
  } catch (e) {
    if (!(e instanceof PollenError)) throw e;
    return { folder, expected: `${e.code}: ${e.message}` };
  }
}

/** Runs the Python FedAvg on every case and compares its bytes, metrics and failures (or refusal) with TypeScript's. */
function expectSameAsPython(cases: Case[]): void {
  execFileSync(PYTHON, ['-W', 'error::RuntimeWarning', '-c', SCRIPT, ...cases.map((c) => c.folder)], {
    env: { ...process.env, PYTHONPATH: SDK, PYTHONDONTWRITEBYTECODE: '1' },
  });
  for (const { folder, expected } of cases) {
    if (typeof expected === 'string') {
      expect(readFileSync(join(folder, 'refused.txt'), 'utf8'), folder).toBe(expected);
      continue;
    }
    const failures = (expected.failures ?? []).map((f) => [f.nodeId, f.messageType, f.code, f.reason]);
    expect(JSON.parse(readFileSync(join(folder, 'failures.json'), 'utf8')), folder).toEqual(failures);
    const got = decodeNpz(readFileSync(join(folder, 'out.npz')));
    expect([...got.keys()]).toEqual([...expected.arrays.keys()]);
    for (const [name, e] of expected.arrays) {
      const g = got.get(name)!;
      expect([g.dtype, g.shape], `${folder} ${name}`).toEqual([e.dtype, e.shape]);
      // Bit for bit: compare the bytes, not the values with a tolerance.
      expect(
        Buffer.from(g.data.buffer, g.data.byteOffset, g.data.byteLength).equals(
          Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength),
        ),
        `${folder} ${name}`,
      ).toBe(true);
    }
    expect(JSON.parse(readFileSync(join(folder, 'metrics.json'), 'utf8'))).toEqual(
      expected.metrics.toObject(),
    );
  }
}

const INTEGERS = ['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64'] as const;
type IntegerDType = (typeof INTEGERS)[number];

function range(dtype: IntegerDType): [bigint, bigint] {
  const bits = BigInt(dtype.replace(/\D/g, ''));
  return dtype.startsWith('u') ? [0n, 2n ** bits - 1n] : [-(2n ** (bits - 1n)), 2n ** (bits - 1n) - 1n];
}

/** An array of `dtype` holding `values` (bigints, exact for int64 and uint64). */
function integerArray(dtype: IntegerDType, values: readonly bigint[]): TypedArray {
  const out = new DTYPES[dtype].ctor(new ArrayBuffer(values.length * DTYPES[dtype].bytes), 0, values.length);
  values.forEach((v, i) => {
    out[i] = out instanceof BigInt64Array || out instanceof BigUint64Array ? v : Number(v);
  });
  return out;
}

/** Values over the dtype's whole range, then its edges and small values (every reply the same). */
function randomIntegers(dtype: IntegerDType, rng: () => number, n: number): TypedArray {
  const [lo, hi] = range(dtype);
  // 53 random bits scaled to the range: exact for every width.
  const random = (): bigint => lo + (BigInt(Math.floor(rng() * 2 ** 53)) * (hi - lo + 1n)) / 2n ** 53n;
  const edges = [lo, hi, lo + 1n, hi - 1n, 0n, 1n, 2n, 3n];
  return integerArray(dtype, [...Array.from({ length: n - edges.length }, random), ...edges]);
}

/** Every dtype but float32 and float64, random values and the special ones. */
function arraysOfEveryDType(rng: () => number): ArrayRecord {
  const specials = [Infinity, -Infinity, 65504, -65504, 2 ** -24, 2 ** -14, -0, 0];
  const half = (n: number, scale: number) =>
    toFloat16([...Array.from({ length: n - specials.length }, () => (rng() - 0.5) * scale), ...specials]);
  return ArrayRecord.fromArrays({
    h: { data: half(500, 4), dtype: 'float16' },
    hsub: { data: half(300, 2 ** -12), dtype: 'float16' }, // mostly subnormal
    hbig: { data: half(70_007, 2), dtype: 'float16', shape: [7, 10_001] }, // a layer the WebAssembly kernel sums
    ...Object.fromEntries(INTEGERS.map((d) => [d, { data: randomIntegers(d, rng, 200), dtype: d }])),
    flag: { data: Uint8Array.from({ length: 200 }, () => (rng() < 0.5 ? 1 : 0)), dtype: 'bool' },
  });
}

describe('Python FedAvg and TypeScript FedAvg', () => {
  it('aggregate the same replies to the same bytes and metrics', { timeout: 120_000 }, () => {
    const rng = seededRng(2026);
    const root = mkdtempSync(join(tmpdir(), 'pollen-parity-'));
    const cases = COUNTS.map((count) =>
      writeCase(
        join(root, `k${count}`),
        Array.from({ length: count }, (_, k) => {
          const arrays = randomArrays(rng);
          // Integer and fractional weights, very unequal ones too.
          const weight = k % 3 === 0 ? 1 + Math.floor(rng() * 1000) : rng() * 50 + 0.001;
          return {
            arrays,
            weight,
            metrics: { 'num-examples': weight, loss: rng() * 4, acc: [rng(), rng()] },
          };
        }),
      ),
    );
    expectSameAsPython(cases);
  });

  it('aggregate every other dtype to the same bytes: ties, subnormals, infinities, range edges', {
    timeout: 120_000,
  }, () => {
    const rng = seededRng(13);
    const root = mkdtempSync(join(tmpdir(), 'pollen-parity-dtypes-'));
    const random = [1, 2, 3, 5, 9].map((count) =>
      writeCase(
        join(root, `k${count}`),
        Array.from({ length: count }, () => {
          const weight = rng() < 0.5 ? 1 + Math.floor(rng() * 100) : rng() * 50 + 0.001;
          return { arrays: arraysOfEveryDType(rng), weight, metrics: { 'num-examples': weight } };
        }),
      ),
    );
    // Two replies of equal weight: every average below is a tie or a range edge.
    const f16 = (...v: number[]) => ({ data: toFloat16(v), dtype: 'float16' as const });
    const ties = (side: 0 | 1) => {
      const l = (a: bigint, b: bigint) => (side === 0 ? a : b);
      return ArrayRecord.fromArrays({
        // 1 and its successor, 2^-24 and 0, 3·2^-24 and 0, 2048 and 2050: halfway, to the even one.
        h:
          side === 0
            ? f16(1, 1 + 2 ** -10, 2 ** -24, 3 * 2 ** -24, 2048, Infinity)
            : f16(1 + 2 ** -10, 1 + 2 ** -9, 0, 0, 2050, Infinity),
        ...Object.fromEntries(
          INTEGERS.map((d) => {
            const [lo, hi] = range(d);
            // 1.5, 2.5, the top and the bottom of the range (int64 and uint64: 2^63 and 2^64 in float64).
            return [d, { data: integerArray(d, [l(1n, 2n), l(2n, 3n), hi, lo, l(hi, hi - 1n)]), dtype: d }];
          }),
        ),
        flag: { data: side === 0 ? Uint8Array.of(1, 0, 1, 0) : Uint8Array.of(0, 1, 1, 0), dtype: 'bool' },
      });
    };
    const tie = writeCase(
      join(root, 'ties'),
      [0, 1].map((side) => ({ arrays: ties(side as 0 | 1), weight: 3, metrics: { 'num-examples': 3 } })),
    );
    const out = (tie.expected as TrainAggregate).arrays;
    expect([...toFloat16([1, 1 + 2 ** -9, 0, 2 * 2 ** -24, 2048, Infinity])]).toEqual([
      ...out.get('h')!.data,
    ]);
    expect([...out.get('int64')!.data]).toEqual([2n, 2n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 63n - 1n]);
    expect([...out.get('uint64')!.data]).toEqual([2n, 2n, 2n ** 64n - 1n, 0n, 2n ** 64n - 1n]);
    expect([...out.get('int8')!.data]).toEqual([2, 2, 127, -128, 126]);
    expect([...out.get('flag')!.data]).toEqual([0, 0, 1, 0]);
    expectSameAsPython([...random, tie]);
  });

  it('leave out the same replies holding NaN, +Inf or -Inf, with the same failures, and refuse a round of only such replies alike', {
    timeout: 120_000,
  }, () => {
    const rng = seededRng(77);
    const root = mkdtempSync(join(tmpdir(), 'pollen-parity-finite-'));
    /** Reply arrays with `value` at `index` of array `name` (float32 or float64). */
    const poisoned = (name: string, index: number, value: number): ArrayRecord => {
      const arrays = randomArrays(rng);
      (arrays.get(name)!.data as Float32Array | Float64Array)[index] = value;
      return arrays;
    };
    const reply = (arrays: ArrayRecord, weight: number) => ({
      arrays,
      weight,
      metrics: { 'num-examples': weight, loss: rng() * 4 },
    });
    // Seven replies, three of them poisoned: the four kept go through the WebAssembly kernel.
    const some = writeCase(join(root, 'some'), [
      reply(randomArrays(rng), 3),
      reply(poisoned('small', 17, Number.NaN), 5),
      reply(randomArrays(rng), 1.5),
      reply(poisoned('big', 69_999, Infinity), 8),
      reply(randomArrays(rng), 2),
      reply(poisoned('d', 0, -Infinity), 4),
      reply(randomArrays(rng), 7),
    ]);
    expect((some.expected as TrainAggregate).failures?.map((f) => f.nodeId)).toEqual(['2', '4', '6']);
    const all = writeCase(join(root, 'all'), [
      reply(poisoned('wide', 3, Number.NaN), 1),
      reply(poisoned('big', 5, Infinity), 1),
      reply(poisoned('d', 49, -Infinity), 1),
    ]);
    expect(all.expected).toBe(
      'UPDATE_NOT_FINITE: Every reply holds NaN or Inf (nodes 1, 2, 3): nothing is left to aggregate',
    );
    expectSameAsPython([some, all]);
  });
});
