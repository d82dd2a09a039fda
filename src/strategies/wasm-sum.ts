/**
 * The weighted sum of aggregate.ts run by the WebAssembly SIMD kernel (wasm-kernel.ts), blocked
 * over tiles of `TILE` elements: per tile, all K updates are summed, in update order, into an
 * accumulator tile that stays in cache (up to eight updates per call, each update's tile read once, in
 * place when it lives in the kernel's memory). float32: the accumulator is the output's tile
 * itself when the output is in the kernel's memory; float64: a float64 tile rounded to float32
 * into the output at the end. Updates in ordinary memory are copied into a slot tile by tile
 * first (the one case that still copies). Bit-identical to `averageRangeJs` (same operations in
 * the same order per element).
 */

import { type KernelMemory, kernelMemory } from './kernel-memory.js';
import { F32_UNROLL, GROUP, type GroupSize, type KernelExports, kernelModule } from './wasm-kernel.js';

/**
 * Elements per tile: a 512 KiB float32 or 1 MiB float64 accumulator (in L2 or L3), a 512 KiB sequential
 * read of each update per call. Longer runs per update keep the hardware prefetcher ahead when K
 * is large: at K = 100 × P = 1M, 128K-element tiles summed 1.37× faster than 8K ones, in one
 * process with the variants interleaved (bench/fedavg-variants.ts, docs/benchmarks.md).
 */
export const TILE = 1 << 17;

/** Scratch bytes per thread: the accumulator tile, four input slots and an output slot. */
export const SCRATCH_BYTES = TILE * 8 + 5 * TILE * 4;

/** One thread's instance of the module over the shared memory, and its own scratch block. */
export interface Kernel {
  memory: WebAssembly.Memory;
  fns: KernelExports;
  scratch: number;
  tile: number;
  /** The float32 functions' vectors per loop iteration (their byte counts are multiples of 16 × this). */
  unroll: number;
  /** Inputs summed per call, at most the module's GROUP (fewer only to measure the difference). */
  group: number;
  /** The module's input parameters per call (GROUP). */
  inputs: number;
}

let compiled: WebAssembly.Module | undefined;

/** The compiled module (compiled once per process; worker threads get it by message). */
export function kernelWasmModule(): WebAssembly.Module {
  compiled ??= new WebAssembly.Module(kernelModule());
  return compiled;
}

let kernel: { kernel: Kernel; memory: KernelMemory } | null | undefined;

/** The calling thread's kernel and the kernel memory, or null where WebAssembly SIMD or threads are missing. */
export function wasmKernel(): { kernel: Kernel; memory: KernelMemory } | null {
  if (kernel !== undefined) return kernel;
  try {
    const memory = kernelMemory();
    const scratch = memory?.allocate(SCRATCH_BYTES);
    if (memory === null || memory === undefined || scratch === null || scratch === undefined)
      throw new Error();
    kernel = { kernel: instantiate(memory.memory, scratch.start), memory };
  } catch {
    kernel = null;
  }
  return kernel;
}

/** An instance of the module over `memory` whose scratch block starts at byte `scratch`. */
export function instantiate(memory: WebAssembly.Memory, scratch: number): Kernel {
  const instance = new WebAssembly.Instance(kernelWasmModule(), { env: { memory } });
  return {
    memory,
    fns: instance.exports as unknown as KernelExports,
    scratch,
    tile: TILE,
    unroll: F32_UNROLL,
    group: GROUP,
    inputs: GROUP,
  };
}

/** How the kernel sums: float32 as Flower does (the default), or in a float64 accumulator. */
export type Precision = 'float32' | 'float64';

/**
 * `o[i] = Σ_k ws[k] · xs[k][i]` for start ≤ i < end, in `precision`. Input k is read in place at
 * byte address `addrs[k]` of the kernel memory, or (addrs[k] = -1) copied tile by tile from
 * `xs[k]`; the output likewise at `oAddr`, or (-1) copied into `o`. Self-contained (no
 * module-level names): kernel-workers.ts ships its source to the workers.
 */
export function wasmAverageRange(
  k: Kernel,
  o: Float32Array | null,
  oAddr: number,
  xs: readonly (Float32Array | null)[],
  addrs: readonly number[],
  ws: Float64Array,
  start: number,
  end: number,
  precision: Precision = 'float32',
): void {
  const { memory, fns, scratch, tile, unroll, group, inputs } = k;
  const f32 = new Float32Array(memory.buffer); // after any growth: the whole memory
  const single = precision === 'float32';
  const ACC = scratch;
  const SLOTS = scratch + tile * 8;
  const OUT = SLOTS + 4 * tile * 4;
  const K = addrs.length;
  // Inputs summed per call, the same for every tile: up to `group` read in place, four where one
  // is copied into a slot (eight 512 KiB slots would not stay in L2: measured slower).
  const spans: number[] = [];
  for (let g = 0; g < K; ) {
    let m = Math.min(group, K - g);
    for (let j = 0; j < m; j++) if ((addrs[g + j] as number) < 0) m = Math.min(4, m);
    spans.push(m);
    g += m;
  }
  const first = spans[0] ?? 0;
  // float32: the sum runs in the output itself when it is in the kernel's memory, unless an input
  // overlaps it other than as one of the first group's at the same address (the first group reads
  // each vector of its inputs before storing it; a later group would read what earlier ones wrote).
  let direct = single && oAddr >= 0;
  for (let q = 0; direct && q < K; q++) {
    const a = addrs[q] as number;
    const overlaps = a >= 0 && a < oAddr + end * 4 && oAddr < a + end * 4;
    if (overlaps && !(q < first && a === oAddr)) direct = false;
  }
  // float32 weights, as numpy rounds a Python float that multiplies a float32 array.
  const w = single ? Float64Array.from(ws, Math.fround) : ws;
  const step = single ? 4 * unroll : 8; // a kernel call's elements are a multiple of its loop step
  const p = new Array<number>(inputs).fill(0);
  const wg = new Array<number>(inputs).fill(0);
  for (let s = start; s < end; s += tile) {
    const e = Math.min(end, s + tile);
    const body = e - s - ((e - s) % step); // whole steps of the kernel; the rest below
    if (body > 0) {
      const bytes = body * 4;
      const acc = !single ? ACC : direct ? oAddr + s * 4 : OUT;
      for (let call = 0, g = 0; call < spans.length; call++) {
        const m = spans[call] as number;
        for (let j = 0; j < m; j++) {
          const a = addrs[g + j] as number;
          if (a >= 0) p[j] = a + s * 4;
          else {
            p[j] = SLOTS + j * tile * 4;
            f32.set((xs[g + j] as Float32Array).subarray(s, s + body), (p[j] as number) >> 2);
          }
        }
        for (let j = 0; j < inputs; j++) wg[j] = j < m ? (w[g + j] as number) : 0;
        const fn = fns[`${single ? 'f32' : ''}${g === 0 ? 'set' : 'add'}${m as GroupSize}`];
        fn(acc, ...p, bytes, ...wg);
        g += m;
      }
      if (single) {
        if (!direct) {
          if (oAddr >= 0) f32.copyWithin((oAddr >> 2) + s, OUT >> 2, (OUT >> 2) + body);
          else (o as Float32Array).set(f32.subarray(OUT >> 2, (OUT >> 2) + body), s);
        }
      } else if (oAddr >= 0) fns.store(oAddr + s * 4, ACC, bytes);
      else {
        fns.store(OUT, ACC, bytes);
        (o as Float32Array).set(f32.subarray(OUT >> 2, (OUT >> 2) + body), s);
      }
    }
    // The last few elements: the same sum, element by element.
    for (let i = s + body; i < e; i++) {
      let sum = 0;
      for (let q = 0; q < K; q++) {
        const a = addrs[q] as number;
        const x = (a >= 0 ? f32[(a >> 2) + i] : (xs[q] as Float32Array)[i]) as number;
        if (single) {
          const term = Math.fround((w[q] as number) * x);
          sum = q === 0 ? term : Math.fround(sum + term);
        } else {
          const term = (w[q] as number) * x;
          sum = q === 0 ? term : sum + term; // from the first term, not from +0 (keeps a lone −0)
        }
      }
      if (oAddr >= 0) f32[(oAddr >> 2) + i] = sum;
      else (o as Float32Array)[i] = sum;
    }
  }
}
