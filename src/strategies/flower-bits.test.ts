/**
 * FedAvg gives Flower's numbers bit for bit: Flower's message-API average
 * (`flwr.serverapp.strategy.strategy_utils.aggregate_arrayrecords`) is written out below and run
 * by Debian's numpy on the same float32 and float64 replies, and the bytes compared. Cases cover
 * the JavaScript loop (small layers), the WebAssembly kernel (every group remainder of four,
 * lengths off its step and its tile, updates in ordinary and in the kernel's memory), and worker
 * threads. The float64-accumulation option and Flower's legacy `aggregate` are shown to give other
 * bits on the same data, so a comparison that could not fail would be caught here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { numpyReference } from '../../test/support/numpy-reference.js';
import { ArrayRecord, Message, MetricRecord, RecordDict } from '../sdk/index.js';
import { type Precision, SMALL_LAYER, weightedAverage } from './aggregate.js';
import { FedAvg } from './fedavg.js';
import { allocKernelFloat32 } from './kernel-memory.js';
import { closeKernelWorkers, PARALLEL_MIN_BYTES } from './kernel-workers.js';
import { TILE } from './wasm-sum.js';

// Flower's code, the arithmetic lines as Flower has them (`value.numpy() * weight`, `+=`), and the
// legacy `flwr.server.strategy.aggregate.aggregate` (`reduce(np.add, …) / num_examples_total`).
const FLOWER = `
import base64
from functools import reduce
def decode(a):
    return np.frombuffer(base64.b64decode(a["b64"]), dtype="<f4" if a["dtype"] == "float32" else "<f8")
def encode(v):
    return base64.b64encode(np.ascontiguousarray(v).tobytes()).decode()
def message_api(replies):
    weights = [r["n"] for r in replies]
    total_weight = sum(weights)
    weight_factors = [w / total_weight for w in weights]
    aggregated = {}
    for r, weight in zip(replies, weight_factors):
        for key, a in r["arrays"].items():
            value = decode(a)
            if key not in aggregated:
                aggregated[key] = value * weight
            else:
                aggregated[key] += value * weight
    return aggregated
def legacy(replies):
    total = sum(r["n"] for r in replies)
    keys = list(replies[0]["arrays"])
    weighted = [[decode(r["arrays"][k]) * r["n"] for k in keys] for r in replies]
    return {k: reduce(np.add, layer) / total for k, layer in zip(keys, zip(*weighted))}
results = [
    {"message": {k: [str(v.dtype), encode(v)] for k, v in message_api(c).items()},
     "legacy": {k: [str(v.dtype), encode(v)] for k, v in legacy(c).items()}}
    for c in cases
]
`;

type Where = 'plain' | 'kernel' | 'shared';

/** Deterministic values of every kind the sum meets: signs, −0, subnormal, tiny, large. */
function fill(a: Float32Array | Float64Array, seed: number): void {
  let s = seed * 2654435761;
  for (let i = 0; i < a.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    const u = s / 4294967296 - 0.5;
    a[i] = i % 97 === 0 ? -0 : i % 89 === 0 ? u * 1e-40 : i % 83 === 0 ? u * 1e30 : u * 10;
  }
}

function float32(n: number, seed: number, where: Where): Float32Array {
  const a =
    where === 'kernel'
      ? (allocKernelFloat32(n) as Float32Array)
      : new Float32Array(where === 'shared' ? new SharedArrayBuffer(n * 4) : new ArrayBuffer(n * 4));
  fill(a, seed);
  return a;
}

const b64 = (a: Float32Array | Float64Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

interface Case {
  /** num-examples of each reply (integers, as ClientApps send them, and one fractional case). */
  n: number[];
  /** Per reply, name → array. */
  replies: Record<string, Float32Array | Float64Array>[];
}

function makeCase(n: number[], lengths: Record<string, number>, where: Where, float64 = 0): Case {
  const replies = n.map((_, k) => {
    const arrays: Record<string, Float32Array | Float64Array> = {};
    for (const [name, len] of Object.entries(lengths)) arrays[name] = float32(len, 31 * k + len, where);
    if (float64 > 0) {
      const d = new Float64Array(float64);
      fill(d, k + 7);
      arrays.f64 = d;
    }
    return arrays;
  });
  return { n, replies };
}

const K_COUNTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 37];
const LENGTHS = { tiny: 5, odd: SMALL_LAYER + 13, tiles: 3 * TILE + 7 };
const cases: Case[] = [
  ...K_COUNTS.map((K) =>
    makeCase(
      Array.from({ length: K }, (_, k) => ((k * 7919) % 600) + 1),
      LENGTHS,
      K % 2 === 0 ? 'kernel' : 'plain',
      K <= 5 ? 101 : 0,
    ),
  ),
  makeCase([2.5, 1e-3, 7, 1234567], { w: SMALL_LAYER + 3 }, 'plain'), // fractional and large counts
  // Enough shared bytes for the worker threads.
  makeCase([3, 1, 4, 1], { big: Math.ceil(PARALLEL_MIN_BYTES / 16) + TILE + 5 }, 'shared'),
];

type Bytes = Record<string, [string, string]>;
let flower: { message: Bytes; legacy: Bytes }[] = [];

beforeAll(() => {
  flower = numpyReference(
    FLOWER,
    cases.map((c) =>
      c.replies.map((r, k) => ({
        n: c.n[k],
        arrays: Object.fromEntries(
          Object.entries(r).map(([name, a]) => [
            name,
            { dtype: a instanceof Float32Array ? 'float32' : 'float64', b64: b64(a) },
          ]),
        ),
      })),
    ),
  );
}, 120_000);

afterAll(() => closeKernelWorkers());

function reply(arrays: Record<string, Float32Array | Float64Array>, n: number, k: number): Message {
  const record = new ArrayRecord();
  for (const [name, data] of Object.entries(arrays))
    record.set(
      name,
      data instanceof Float32Array
        ? { dtype: 'float32', shape: [data.length], data }
        : { dtype: 'float64', shape: [data.length], data },
    );
  return Message.create({ dstNodeId: `n${k}`, messageType: 'train', content: new RecordDict() }).createReply(
    new RecordDict({ arrays: record, metrics: new MetricRecord({ 'num-examples': n }) }),
  );
}

/** How many elements differ in their bits from Flower's (its dtype must match too). */
function differing(got: Float32Array | Float64Array, [dtype, bytes]: [string, string]): number {
  expect(got instanceof Float32Array ? 'float32' : 'float64').toBe(dtype);
  const want = Buffer.from(bytes, 'base64');
  const mine = Buffer.from(got.buffer, got.byteOffset, got.byteLength);
  expect(mine.length).toBe(want.length);
  const size = got.BYTES_PER_ELEMENT;
  let count = 0;
  for (let i = 0; i < mine.length; i += size)
    if (!mine.subarray(i, i + size).equals(want.subarray(i, i + size))) count++;
  return count;
}

function viaWeightedAverage(c: Case, precision: Precision, threads = 1): Record<string, Float32Array> {
  const names = Object.keys(c.replies[0] as object).filter(
    (n) => (c.replies[0] as Record<string, unknown>)[n] instanceof Float32Array,
  );
  const out = weightedAverage(
    c.replies.map((r, k) => ({ arrays: names.map((n) => r[n] as Float32Array), weight: c.n[k] as number })),
    undefined,
    { precision, threads },
  );
  return Object.fromEntries(names.map((n, l) => [n, out[l] as Float32Array]));
}

describe("FedAvg against Flower's own averaging code on Debian's numpy", () => {
  cases.forEach((c, i) => {
    const names = Object.keys(c.replies[0] as object);
    const sizes = names.map((n) => `${n} ${(c.replies[0] as Record<string, { length: number }>)[n]?.length}`);
    it(`gives the message API's bytes for K = ${c.n.length} (${sizes.join(', ')})`, () => {
      const r = new FedAvg().aggregateTrain(
        1,
        c.replies.map((arrays, k) => reply(arrays, c.n[k] as number, k)),
      );
      for (const name of names) {
        const got = r.arrays.get(name)?.data as Float32Array | Float64Array;
        expect(differing(got, flower[i]?.message[name] as [string, string]), name).toBe(0);
      }
    });
  });

  it('gives the same bytes summed over 2 worker threads from shared memory', () => {
    const i = cases.length - 1;
    const c = cases[i] as Case;
    const got = viaWeightedAverage(c, 'float32', 2);
    expect(got.big?.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(differing(got.big as Float32Array, flower[i]?.message.big as [string, string])).toBe(0);
  });

  it("differs from Flower's bytes with the float64 accumulator, and Flower's legacy API differs too", () => {
    const i = K_COUNTS.indexOf(9);
    const c = cases[i] as Case;
    const f64 = viaWeightedAverage(c, 'float64');
    const n = (f64.tiles as Float32Array).length;
    const off = differing(f64.tiles as Float32Array, flower[i]?.message.tiles as [string, string]);
    const legacy = differing(
      viaWeightedAverage(c, 'float32').tiles as Float32Array,
      flower[i]?.legacy.tiles as [string, string],
    );
    // Measured (K = 9, 24,583 elements): 15,387 and 17,318 elements differ.
    expect(off).toBeGreaterThan(n / 4);
    expect(legacy).toBeGreaterThan(n / 4);
  });
});
