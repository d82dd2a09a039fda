import { afterAll, describe, expect, it } from 'vitest';
import { ArrayRecord, Message, MetricRecord, RecordDict } from '../sdk/index.js';
import {
  averageRange,
  averageRangeJs,
  normalizeWeights,
  type Precision,
  SMALL_LAYER,
  weightedAverage,
} from './aggregate.js';
import { FedAvg } from './fedavg.js';
import { allocKernelFloat32, inKernelMemory } from './kernel-memory.js';
import { closeKernelWorkers, PARALLEL_MIN_BYTES, parallelSum } from './kernel-workers.js';
import { kernelModule } from './wasm-kernel.js';
import { TILE, wasmKernel } from './wasm-sum.js';

/** Deterministic float32 values of every kind the kernel meets: signs, -0, tiny, subnormal, huge. */
function values(
  n: number,
  seed: number,
  where: 'plain' | 'shared' | 'kernel' | boolean = 'plain',
): Float32Array {
  const at = where === true ? 'shared' : where === false ? 'plain' : where;
  const a =
    at === 'kernel'
      ? (allocKernelFloat32(n) as Float32Array)
      : new Float32Array(at === 'shared' ? new SharedArrayBuffer(n * 4) : new ArrayBuffer(n * 4));
  let s = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    const u = s / 4294967296 - 0.5;
    a[i] = i % 97 === 0 ? -0 : i % 89 === 0 ? u * 1e-40 : i % 83 === 0 ? u * 3e38 : u * 10;
  }
  return a;
}

/** The same bits (NaN included): a kernel that rounds once more or in another order differs here. */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** The JS reference and the fast kernel on the same inputs, in ordinary or in the kernel's memory. */
function bothKernels(
  K: number,
  n: number,
  weights: number[],
  start = 0,
  end = n,
  where: 'plain' | 'kernel' = 'plain',
  precision: Precision = 'float32',
) {
  const xs = Array.from({ length: K }, (_, k) => values(n, k + 1, where));
  const ws = Float64Array.from(weights);
  const js = new Float32Array(n);
  const fast = where === 'kernel' ? (allocKernelFloat32(n) as Float32Array).fill(0) : new Float32Array(n);
  averageRangeJs(js, xs, ws, start, end, precision);
  averageRange(fast, xs, ws, start, end, precision);
  return { js, fast };
}

const PRECISIONS = ['float32', 'float64'] as const;

/** The float64 definition: per element, a float64 sum in update order from the first term, rounded once. */
function sequential64(xs: readonly Float32Array[], ws: Float64Array, i: number): number {
  let acc = (ws[0] as number) * (xs[0] as Float32Array)[i]!;
  for (let k = 1; k < xs.length; k++) acc += (ws[k] as number) * (xs[k] as Float32Array)[i]!;
  return Math.fround(acc);
}

/** The float32 definition (numpy's float32 in Flower's order): every weight, product and sum rounded. */
function sequential32(xs: readonly Float32Array[], ws: Float64Array, i: number): number {
  const f = Math.fround;
  let acc = f(f(ws[0] as number) * (xs[0] as Float32Array)[i]!);
  for (let k = 1; k < xs.length; k++) acc = f(acc + f(f(ws[k] as number) * (xs[k] as Float32Array)[i]!));
  return acc;
}

afterAll(() => closeKernelWorkers());

describe('the WebAssembly SIMD kernel', () => {
  it('is valid WebAssembly and instantiates here', () => {
    expect(WebAssembly.validate(kernelModule())).toBe(true);
    expect(wasmKernel()).not.toBeNull();
  });

  it('sums each element in float64 in update order and rounds once (the JavaScript reference)', () => {
    const n = SMALL_LAYER + 9;
    const xs = [values(n, 1), values(n, 2), values(n, 3), values(n, 4), values(n, 5)];
    const ws = normalizeWeights([5, 1, 3, 2, 7]);
    const js = new Float32Array(n);
    averageRangeJs(js, xs, ws, 0, n, 'float64');
    for (let i = 0; i < n; i += 997) expect(js[i]).toBe(sequential64(xs, ws, i));
    expect(js[n - 1]).toBe(sequential64(xs, ws, n - 1));
  });

  it('sums each element in float32 in update order by default, rounding every step (the JavaScript reference)', () => {
    const n = SMALL_LAYER + 9;
    const xs = [values(n, 1), values(n, 2), values(n, 3), values(n, 4), values(n, 5)];
    const ws = normalizeWeights([5, 1, 3, 2, 7]);
    const js = new Float32Array(n);
    averageRangeJs(js, xs, ws, 0, n);
    let differs = 0;
    for (let i = 0; i < n; i += 101) {
      expect(js[i]).toBe(sequential32(xs, ws, i));
      if (js[i] !== sequential64(xs, ws, i)) differs++;
    }
    expect(js[n - 1]).toBe(sequential32(xs, ws, n - 1));
    expect(differs).toBeGreaterThan(0); // the two definitions are told apart by these values
  });

  // Every group form (set/add × 1–8 updates), lengths off the SIMD step (8) and the tile, updates
  // copied in from ordinary memory and read in place from the kernel's memory.
  const lengths = [SMALL_LAYER, SMALL_LAYER + 1, SMALL_LAYER + 3, 3 * TILE + 5];
  for (const K of [...Array.from({ length: 16 }, (_, i) => i + 1), 37]) {
    it(`gives the JavaScript kernel's bits for K = ${K} at lengths ${lengths.join(', ')}, in both precisions`, () => {
      const ws = normalizeWeights(Array.from({ length: K }, (_, k) => ((k * 7919) % 13) + 1));
      for (const precision of PRECISIONS)
        for (const n of lengths)
          for (const where of ['plain', 'kernel'] as const) {
            const { js, fast } = bothKernels(K, n, Array.from(ws), 0, n, where, precision);
            expect(sameBits(js, fast), `${precision} n=${n} ${where}`).toBe(true);
          }
    });
  }

  it('gives the same bits on a range that starts and ends off the tile grid', () => {
    const n = 5 * TILE + 11;
    for (const precision of PRECISIONS)
      for (const where of ['plain', 'kernel'] as const) {
        const ws = [0.1, 0.2, 0.05, 0.3, 0.25, 0.1];
        const { js, fast } = bothKernels(6, n, ws, 3, n - 2, where, precision);
        expect(sameBits(js, fast)).toBe(true);
        expect(fast[0]).toBe(0); // outside the range: untouched
        expect(fast[1]).toBe(0);
        expect(fast[n - 1]).toBe(0);
      }
  });

  it('sums into an output in the kernel memory that is also one of the inputs (any position)', () => {
    const n = SMALL_LAYER + 37; // the WebAssembly kernel
    const ws = normalizeWeights([3, 1, 4, 1, 5, 9]);
    for (const precision of PRECISIONS)
      for (const at of [0, 3, 5]) {
        const xs = Array.from({ length: 6 }, (_, k) => values(n, k + 1, 'kernel'));
        const expected = new Float32Array(n);
        averageRangeJs(expected, xs, ws, 0, n, precision);
        const o = xs[at] as Float32Array;
        averageRange(o, xs, ws, 0, n, precision);
        expect(sameBits(o, expected), `${precision} output = input ${at}`).toBe(true);
        const js = Array.from({ length: 6 }, (_, k) => values(n, k + 1));
        averageRangeJs(js[at] as Float32Array, js, ws, 0, n, precision);
        expect(sameBits(js[at] as Float32Array, expected), `JavaScript, output = input ${at}`).toBe(true);
      }
  });

  it('gives the same bits with some updates in the kernel memory and some not', () => {
    const n = 3 * TILE + 7;
    const xs = [
      values(n, 1, 'kernel'),
      values(n, 2),
      values(n, 3, 'kernel'),
      values(n, 4, 'shared'),
      values(n, 5),
    ];
    const ws = normalizeWeights([2, 1, 1, 3, 1]);
    const js = new Float32Array(n);
    const fast = new Float32Array(n);
    averageRangeJs(js, xs, ws, 0, n);
    averageRange(fast, xs, ws, 0, n);
    expect(sameBits(js, fast)).toBe(true);
    // Calls of eight in-place updates, then of four where one is copied, then of eight again.
    const where = (k: number) => (k === 10 || k === 17 ? 'plain' : 'kernel');
    const many = Array.from({ length: 23 }, (_, k) => values(TILE + 13, k + 1, where(k)));
    const mw = normalizeWeights(many.map((_, k) => (k % 5) + 1));
    for (const precision of PRECISIONS) {
      const want = new Float32Array(TILE + 13);
      averageRangeJs(want, many, mw, 0, TILE + 13, precision);
      const got = values(TILE + 13, 99, 'kernel');
      averageRange(got, many, mw, 0, TILE + 13, precision);
      expect(sameBits(want, got), precision).toBe(true);
    }
  });

  it('sums into an output that is the sixth input when a copied input makes the first call one of four', () => {
    const n = SMALL_LAYER + 37;
    const xs = Array.from({ length: 9 }, (_, k) => values(n, k + 1, k === 2 ? 'plain' : 'kernel'));
    const ws = normalizeWeights([3, 1, 4, 1, 5, 9, 2, 6, 5]);
    const expected = new Float32Array(n);
    averageRangeJs(expected, xs, ws, 0, n);
    const o = xs[5] as Float32Array;
    averageRange(o, xs, ws, 0, n);
    expect(sameBits(o, expected)).toBe(true);
  });

  it('gives the same bits with zero weights among the updates (kept as exact zeros)', () => {
    const { js, fast } = bothKernels(5, SMALL_LAYER + 7, [0, 0.5, 0, 0.5, 0]);
    expect(sameBits(js, fast)).toBe(true);
  });

  it('propagates Inf and NaN as the JavaScript kernel does, in the SIMD body and the tail', () => {
    const n = SMALL_LAYER + 6; // the last 6 elements are the scalar tail
    for (const where of ['plain', 'kernel'] as const) {
      const xs = [values(n, 1, where), values(n, 2, where), values(n, 3, where)];
      for (const i of [5, n - 3]) (xs[0] as Float32Array)[i] = Number.POSITIVE_INFINITY;
      for (const i of [9, n - 2]) (xs[1] as Float32Array)[i] = Number.NaN;
      (xs[2] as Float32Array)[12] = Number.NEGATIVE_INFINITY;
      (xs[0] as Float32Array)[12] = Number.POSITIVE_INFINITY; // Inf − Inf
      const ws = normalizeWeights([1, 2, 3]);
      const js = new Float32Array(n);
      const fast = new Float32Array(n);
      averageRangeJs(js, xs, ws, 0, n);
      averageRange(fast, xs, ws, 0, n);
      expect([fast[5], fast[n - 3]]).toEqual([Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY]);
      for (const i of [9, 12, n - 2]) {
        expect(fast[i]).toBeNaN();
        fast[i] = js[i] = 0; // NaN payloads are not specified
      }
      expect(sameBits(js, fast)).toBe(true);
    }
  });

  it('returns one reply unchanged, bit for bit', () => {
    const x = values(SMALL_LAYER + 5, 4);
    const [out] = weightedAverage([{ arrays: [x], weight: 3 }]);
    expect(sameBits(out as Float32Array, x)).toBe(true);
  });
});

describe('the kernel over worker threads (updates in shared memory)', () => {
  // Enough bytes for the threads to be used: 4 updates × 2 layers ≥ PARALLEL_MIN_BYTES.
  const n = Math.ceil(PARALLEL_MIN_BYTES / 4 / 4 / 2) + 13;
  const updates = (shared: boolean) =>
    [3, 1, 4, 1].map((weight, k) => ({
      arrays: [values(n, k + 1, shared), values(n, k + 11, shared), values(100, k + 21, shared)],
      weight,
    }));

  it('gives the single-thread bits with 2 and 3 threads, into shared output', () => {
    const alone = weightedAverage(updates(false), undefined, { threads: 1 });
    for (const threads of [2, 3]) {
      const out = weightedAverage(updates(true), undefined, { threads });
      expect(out.map((o) => o.buffer instanceof SharedArrayBuffer)).toEqual([true, true, true]);
      out.forEach((o, l) => {
        expect(sameBits(o, alone[l] as Float32Array)).toBe(true);
      });
    }
  });

  it('has the worker threads do their shares (no fallback to the calling thread)', () => {
    const xs = updates(true).map((u) => u.arrays[0] as Float32Array);
    const ws = normalizeWeights([3, 1, 4, 1]);
    const o = new Float32Array(new SharedArrayBuffer(n * 4));
    const expected = new Float32Array(n);
    averageRangeJs(expected, xs, ws, 0, n);
    const alone = () => {
      throw new Error('the calling thread summed alone');
    };
    expect(parallelSum([{ o, xs, start: 0, end: n }], ws, 2, alone)).toBe(true);
    expect(sameBits(o, expected)).toBe(true);
  });

  it('reads updates in the kernel memory in place on every thread; writes a new output to shared memory, a given one in place', () => {
    const alone = weightedAverage(updates(false), undefined, { threads: 1 });
    const inKernel = [3, 1, 4, 1].map((weight, k) => ({
      arrays: [values(n, k + 1, 'kernel'), values(n, k + 11, 'kernel'), values(100, k + 21)],
      weight,
    }));
    const out = weightedAverage(inKernel, undefined, { threads: 2 });
    // An aggregate outlives its round: never in the kernel memory unless given there.
    expect(out.map(inKernelMemory)).toEqual([false, false, false]);
    expect(out.map((o) => o.buffer instanceof SharedArrayBuffer)).toEqual([true, true, false]);
    out.forEach((o, l) => {
      expect(sameBits(o, alone[l] as Float32Array)).toBe(true);
    });
    const xs = inKernel.map((u) => u.arrays[0] as Float32Array);
    const o = allocKernelFloat32(n) as Float32Array;
    const never = () => {
      throw new Error('the calling thread summed alone');
    };
    expect(parallelSum([{ o, xs, start: 0, end: n }], normalizeWeights([3, 1, 4, 1]), 2, never)).toBe(true);
    expect(sameBits(o, alone[0] as Float32Array)).toBe(true);
  });

  it('writes into a shared input given as the output', () => {
    const input = updates(true);
    const expected = weightedAverage(updates(false), undefined, { threads: 1 });
    const out = input[0]?.arrays as Float32Array[];
    weightedAverage(input, out, { threads: 2 });
    out.forEach((o, l) => {
      expect(sameBits(o, expected[l] as Float32Array)).toBe(true);
    });
  });

  it('starts its workers again after closeKernelWorkers', async () => {
    await closeKernelWorkers();
    const alone = weightedAverage(updates(false), undefined, { threads: 1 });
    const out = weightedAverage(updates(true), undefined, { threads: 2 });
    out.forEach((o, l) => {
      expect(sameBits(o, alone[l] as Float32Array)).toBe(true);
    });
  });

  it('splits the shared layers when other layers are in ordinary memory (small ones arrive so)', () => {
    const mixed = updates(true).map((u, k) => ({
      ...u,
      arrays: [...u.arrays.slice(0, 2), values(100, k + 21)],
    }));
    const alone = weightedAverage(updates(false), undefined, { threads: 1 });
    const out = weightedAverage(mixed, undefined, { threads: 2 });
    expect(out.map((o) => o.buffer instanceof SharedArrayBuffer)).toEqual([true, true, false]);
    out.forEach((o, l) => {
      expect(sameBits(o, alone[l] as Float32Array)).toBe(true);
    });
  });

  it('keeps updates in ordinary memory on the calling thread (and its output too)', () => {
    const out = weightedAverage(updates(false), undefined, { threads: 2 });
    expect(out[0]?.buffer instanceof SharedArrayBuffer).toBe(false);
  });

  it('gives FedAvg the same bits for replies received into shared memory as for ordinary ones', () => {
    const reply = (arrays: ArrayRecord, k: number) =>
      Message.create({ dstNodeId: `n${k}`, messageType: 'train', content: new RecordDict() }).createReply(
        new RecordDict({ arrays, metrics: new MetricRecord({ 'num-examples': 10 * (k + 1) }) }),
      );
    const round = (shared: boolean) =>
      updates(shared).map((u, k) => {
        const arrays = new ArrayRecord();
        u.arrays.forEach((data, l) => {
          arrays.set(`layer${l}`, { dtype: 'float32', shape: [data.length], data });
        });
        return reply(arrays, k);
      });
    const plain = new FedAvg().aggregateTrain(1, round(false)).arrays;
    const shared = new FedAvg().aggregateTrain(1, round(true)).arrays;
    for (const [name, entry] of plain)
      expect(sameBits(shared.get(name)?.data as Float32Array, entry.data as Float32Array)).toBe(true);
    expect(shared.get('layer0')?.data.buffer instanceof SharedArrayBuffer).toBe(true);
  });
});
