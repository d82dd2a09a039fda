/**
 * FedAvg gives Flower's numbers bit for bit: Flower's message-API average
 * (`flwr.serverapp.strategy.strategy_utils.aggregate_arrayrecords`) is written out below and run
 * by Debian's numpy on the same float32, float64 and float16 replies, and the bytes compared.
 * Cases cover the JavaScript loop (small layers), the WebAssembly kernel (every group remainder of
 * eight, lengths off its step and its tile, updates in ordinary and in the kernel's memory), and
 * worker threads; float16 subnormals, ±0, ties, infinities and sums that overflow to infinity.
 * The float64-accumulation option, Flower's legacy `aggregate` and (float16) the earlier
 * widen-to-float32 average are shown to give other bits on the same data, so a comparison that
 * could not fail would be caught here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { numpyReference } from '../../test/support/numpy-reference.js';
import { ArrayRecord, fromFloat16, Message, MetricRecord, RecordDict, toFloat16 } from '../sdk/index.js';
import { type Precision, SMALL_LAYER, weightedAverage } from './aggregate.js';
import { FedAvg } from './fedavg.js';
import { allocKernelFloat32 } from './kernel-memory.js';
import { closeKernelWorkers, PARALLEL_MIN_BYTES } from './kernel-workers.js';
import { aggregateArrayRecords } from './records.js';
import { TILE } from './wasm-sum.js';

// Flower's code, the arithmetic lines as Flower has them (`value.numpy() * weight`, `+=`), and the
// legacy `flwr.server.strategy.aggregate.aggregate` (`reduce(np.add, …) / num_examples_total`).
const FLOWER = `
import base64
from functools import reduce
DTYPES = {"float16": "<f2", "float32": "<f4", "float64": "<f8"}
def decode(a):
    return np.frombuffer(base64.b64decode(a["b64"]), dtype=DTYPES[a["dtype"]])
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

/**
 * Deterministic float16 bits of every kind: ±0, subnormals, values near the largest finite one,
 * +∞ (in some replies; never −∞, whose sum with +∞ would be a NaN), random bits over the whole
 * finite range and ordinary values.
 */
function float16(n: number, seed: number): Uint16Array {
  const a = new Uint16Array(n);
  let s = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    const sign = s & 0x8000;
    const random = (s >>> 13) & 0x7fff;
    a[i] =
      i % 97 === 0
        ? 0x8000
        : i % 101 === 0
          ? 0
          : i % 89 === 0
            ? sign | (random & 0x3ff) // subnormal
            : i % 83 === 0
              ? 0x7bc0 | (random & 0x3f) // 63488 … 65504
              : i % 211 === 0 && seed % 2 === 0
                ? 0x7c00
                : i % 3 === 0
                  ? sign | (random >= 0x7c00 ? random ^ 0x4000 : random) // any finite value
                  : toFloat16([(s / 4294967296 - 0.5) * 8])[0]!;
  }
  return a;
}

type Data = Float32Array | Float64Array | Uint16Array;

const b64 = (a: Data) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

const dtypeOf = (a: Data) =>
  a instanceof Float32Array ? 'float32' : a instanceof Float64Array ? 'float64' : 'float16';

interface Case {
  /** num-examples of each reply (integers, as ClientApps send them, and one fractional case). */
  n: number[];
  /** Per reply, name → array. */
  replies: Record<string, Data>[];
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

// Every form of the kernel's group functions: set 1–8 and add 1–8 (GROUP = 8), and several groups.
const K_COUNTS = [...Array.from({ length: 16 }, (_, i) => i + 1), 37];
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

function halfCase(n: number[], lengths: Record<string, number>): Case {
  return {
    n,
    replies: n.map((_, k) =>
      Object.fromEntries(Object.entries(lengths).map(([name, len]) => [name, float16(len, 31 * k + len)])),
    ),
  };
}

// Near the largest float16 in every reply: with these weights the float16 sum's rounding goes past
// 65520 and the average is ±∞, though the exact one is finite (found by a search over weights).
const MAX16 = [65504, 65472, 65440, 65408, 60000].flatMap((v) => [v, -v]);
const HALF_K = [1, 2, 3, 7, 37];
const HALF_LENGTHS = { tiny: 5, mid: 1001, big: SMALL_LAYER + 13 };
const halfCases: Case[] = [
  ...HALF_K.map((K) =>
    halfCase(
      Array.from({ length: K }, (_, k) => ((k * 7919) % 600) + 1),
      HALF_LENGTHS,
    ),
  ),
  // Fractional and large counts; the weight 1e-3 / 1234576.5 rounds to float16 0 (and 2.5 / … to
  // a subnormal), so an ∞ in that reply gives NaN, in Flower as in Pollen.
  halfCase([2.5, 1e-3, 7, 1234567], { w: 4099 }),
  // Equal weights of 1/2 and 1/4 (exact in float16): halfway cases everywhere, to the even one.
  {
    n: [3, 3],
    replies: [0, 1].map((k) => {
      const x = float16(4096, 5);
      return { ties: k === 0 ? x : x.map((b) => ((b & 0x7fff) >= 0x7bff ? b : b + 1)) };
    }),
  },
  halfCase([1, 1, 1, 1], { quarters: 4096 }),
  { n: [2427, 1071, 105], replies: [0, 1, 2].map(() => ({ max: toFloat16(MAX16) })) },
];

type Bytes = Record<string, [string, string]>;
let flower: { message: Bytes; legacy: Bytes }[] = [];

beforeAll(() => {
  flower = numpyReference(
    FLOWER,
    [...cases, ...halfCases].map((c) =>
      c.replies.map((r, k) => ({
        n: c.n[k],
        arrays: Object.fromEntries(
          Object.entries(r).map(([name, a]) => [name, { dtype: dtypeOf(a), b64: b64(a) }]),
        ),
      })),
    ),
  );
}, 120_000);

afterAll(() => closeKernelWorkers());

function reply(arrays: Record<string, Data>, n: number, k: number): Message {
  const record = new ArrayRecord();
  for (const [name, data] of Object.entries(arrays))
    record.set(
      name,
      data instanceof Float32Array
        ? { dtype: 'float32', shape: [data.length], data }
        : data instanceof Float64Array
          ? { dtype: 'float64', shape: [data.length], data }
          : { dtype: 'float16', shape: [data.length], data },
    );
  return Message.create({ dstNodeId: `n${k}`, messageType: 'train', content: new RecordDict() }).createReply(
    new RecordDict({ arrays: record, metrics: new MetricRecord({ 'num-examples': n }) }),
  );
}

const isNaN16 = (bits: number) => (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;

/**
 * How many elements differ in their bits from Flower's (its dtype must match too). A float16 NaN
 * matches any NaN: ∞ · 0 (a weight that rounds to float16 0) is one in both, but its sign is the
 * hardware's (x86 makes −NaN) where Pollen's is JavaScript's; float32 and float64 never meet NaN
 * here (FedAvg leaves out replies holding one).
 */
function differing(got: Data, [dtype, bytes]: [string, string]): number {
  expect(dtypeOf(got)).toBe(dtype);
  const want = Buffer.from(bytes, 'base64');
  const mine = Buffer.from(got.buffer, got.byteOffset, got.byteLength);
  expect(mine.length).toBe(want.length);
  const size = got.BYTES_PER_ELEMENT;
  let count = 0;
  for (let i = 0; i < mine.length; i += size)
    if (
      !mine.subarray(i, i + size).equals(want.subarray(i, i + size)) &&
      !(size === 2 && isNaN16(mine.readUInt16LE(i)) && isNaN16(want.readUInt16LE(i)))
    )
      count++;
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

const sizesOf = (c: Case) =>
  Object.entries(c.replies[0] as object)
    .map(([n, a]) => `${n} ${(a as Data).length}`)
    .join(', ');

function fedAvg(c: Case): ArrayRecord {
  return new FedAvg().aggregateTrain(
    1,
    c.replies.map((arrays, k) => reply(arrays, c.n[k] as number, k)),
  ).arrays;
}

describe("FedAvg on float16 arrays against Flower's code on Debian's numpy", () => {
  const want = (j: number, name: string) => flower[cases.length + j]?.message[name] as [string, string];

  halfCases.forEach((c, j) => {
    it(`gives the message API's bytes for K = ${c.n.length}, num-examples ${c.n.join(' ')} (${sizesOf(c)})`, () => {
      const r = fedAvg(c);
      for (const name of Object.keys(c.replies[0] as object))
        expect(differing(r.get(name)?.data as Uint16Array, want(j, name)), name).toBe(0);
    });
  });

  it('overflows to ±∞ where the float16 sum rounds past the largest float16, as Flower does', () => {
    const j = halfCases.length - 1;
    const got = fedAvg(halfCases[j] as Case).get('max')!.data as Uint16Array;
    expect([...got.subarray(0, 2)]).toEqual([0x7c00, 0xfc00]); // the average of ±65504 is ±∞
    expect(differing(got, want(j, 'max'))).toBe(0);
  });

  it('differs from the earlier widen-to-float32 average and from the float64 accumulator', () => {
    const perCase = halfCases.map((c, j) => {
      const names = Object.keys(c.replies[0] as object);
      // The earlier default: float16 widened to float32, summed by the float32 kernel, rounded back.
      const sum32 = weightedAverage(
        c.replies.map((r, k) => ({
          arrays: names.map((n) => fromFloat16(r[n] as Uint16Array)),
          weight: c.n[k] as number,
        })),
      );
      // precision 'float64' (the strategies that keep state): widened to float64, rounded once.
      const sum64 = aggregateArrayRecords(
        c.replies.map((_, k) => ({ nodeId: `n${k}`, content: new RecordDict() })),
        c.replies.map((r) =>
          ArrayRecord.fromArrays(
            Object.fromEntries(
              Object.entries(r).map(([n, a]) => [n, { data: a, dtype: 'float16' as const }]),
            ),
          ),
        ),
        c.n,
        'float64',
      );
      let [elements, widened, float64] = [0, 0, 0];
      names.forEach((name, l) => {
        elements += (sum32[l] as Float32Array).length;
        widened += differing(toFloat16(sum32[l] as Float32Array), want(j, name));
        float64 += differing(sum64.get(name)?.data as Uint16Array, want(j, name));
      });
      return { elements, widened, float64 };
    });
    // One reply of weight 1 comes back as sent on every path.
    expect(perCase[0]).toEqual({ elements: perCase[0]?.elements, widened: 0, float64: 0 });
    // Measured, K = 2, 3, 7, 37 (66,555 elements each): 16,074, 31,378, 35,144 and 49,310 elements
    // differ from Flower's on the widened path, about as many with the float64 accumulator; in
    // all the float16 cases 133,296 of 345,076. Of the ten near ±65504, 8 (Flower: ±∞ in two).
    for (const r of perCase.slice(1, HALF_K.length)) {
      expect(r.widened).toBeGreaterThan(r.elements / 5);
      expect(r.float64).toBeGreaterThan(r.elements / 5);
    }
    expect(perCase.at(-1)?.widened).toBeGreaterThanOrEqual(2);
  });
});
