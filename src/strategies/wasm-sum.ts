/**
 * The weighted sum of aggregate.ts run by the WebAssembly SIMD kernel (wasm-kernel.ts): per
 * chunk of `CHUNK` elements, the updates are copied four at a time into slots of the module's
 * memory (the one read of each update from main memory; the slots stay in cache), summed there
 * into the output slot, and the output chunk is copied out once. Bit-identical to the JavaScript
 * loops (same operations in the same order per element).
 */
import { type KernelFn, type KernelName, kernelModule } from './wasm-kernel.js';

/** Elements per chunk: 5 slots × 32 KiB = 160 KiB, inside L2. */
export const WASM_CHUNK = 1 << 13;

/** An instance of the module; `chunk` elements per slot (slots 0–3 inputs, slot 4 the output). */
export interface Kernel {
  f32: Float32Array;
  fns: Record<KernelName, KernelFn>;
  chunk: number;
}

let kernel: Kernel | null | undefined;

/** The instantiated module, or null where WebAssembly SIMD is unavailable (then the JS loops run). */
export function wasmKernel(): Kernel | null {
  if (kernel !== undefined) return kernel;
  try {
    kernel = instantiate(kernelModule(Math.ceil((5 * WASM_CHUNK * 4) / 65536)), WASM_CHUNK);
  } catch {
    kernel = null;
  }
  return kernel;
}

/** An instance of the module `bytes` (made by kernelModule for chunks of `chunk` elements). */
export function instantiate(bytes: Uint8Array<ArrayBuffer>, chunk: number): Kernel {
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes));
  const memory = exports.memory as WebAssembly.Memory;
  return {
    f32: new Float32Array(memory.buffer),
    fns: exports as unknown as Record<KernelName, KernelFn>,
    chunk,
  };
}

/**
 * `o[i] = Σ_k ws[k] · xs[k][i]` for start ≤ i < end (the grouping of aggregate.ts `averageRange`).
 * Self-contained (no module-level names): kernel-workers.ts ships its source to the workers.
 */
export function wasmAverageRange(
  k: Kernel,
  o: Float32Array,
  xs: readonly Float32Array[],
  ws: Float64Array,
  start: number,
  end: number,
): void {
  const { f32, fns, chunk } = k;
  const SLOT = chunk * 4;
  const OUT = 4 * SLOT;
  const K = xs.length;
  for (let s = start; s < end; s += chunk) {
    const e = Math.min(end, s + chunk);
    // Whole 16-byte steps: the slots' tails past e hold stale values whose sums are never copied out.
    const bytes = Math.ceil((e - s) / 4) * 16;
    for (let g = 0; g < K; g += 4) {
      const m = Math.min(4, K - g);
      for (let j = 0; j < m; j++) f32.set((xs[g + j] as Float32Array).subarray(s, e), (j * SLOT) >> 2);
      const fn = fns[`${g === 0 ? 'set' : 'add'}${m as 1 | 2 | 3 | 4}`];
      fn(
        OUT,
        0,
        SLOT,
        2 * SLOT,
        3 * SLOT,
        bytes,
        ws[g] as number,
        m > 1 ? (ws[g + 1] as number) : 0,
        m > 2 ? (ws[g + 2] as number) : 0,
        m > 3 ? (ws[g + 3] as number) : 0,
      );
    }
    o.set(f32.subarray(OUT >> 2, (OUT >> 2) + (e - s)), s);
  }
}
