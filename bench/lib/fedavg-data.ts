/** The updates of the FedAvg benches (bench/fedavg.ts, bench/fedavg-targets.ts) and their sizes. */
import { normalizeWeights } from '../../src/strategies/aggregate.js';
import { hugePageSetting, type PageAdvice } from '../../src/strategies/huge-pages.js';
import { allocKernelFloat32, kernelMemory } from '../../src/strategies/kernel-memory.js';

/** Deterministic values in [0, 1) (an LCG per update), written straight into the given view. */
export function fillUniform(a: Float32Array, seed: number): void {
  let s = seed * 2654435761;
  for (let i = 0; i < a.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 4294967296;
  }
}

/** `--sizes K1xP1,K2xP2,…` as numbers. */
export function parseSizes(s: string): { K: number; P: number }[] {
  return s.split(',').map((x) => {
    const m = /^(\d+)x(\d+)$/.exec(x.trim());
    if (!m) throw new Error(`--sizes: "${x}" is not KxP (e.g. 10x25000000)`);
    return { K: Number(m[1]), P: Number(m[2]) };
  });
}

/**
 * K updates of P floats as views of `pool` (a block of the kernel's memory, which stays
 * referenced, so the block lives), filled with `fillUniform`, weights 1..K, and an output in the
 * kernel's memory: what `weightedAverage` is given.
 */
export function kernelUpdates(pool: Float32Array, K: number, P: number) {
  const updates = Array.from(
    { length: K },
    (_, k) => new Float32Array(pool.buffer, pool.byteOffset + k * P * 4, P),
  );
  updates.forEach((a, k) => {
    fillUniform(a, k + 1);
  });
  const weightList = updates.map((_, k) => k + 1);
  const weights = normalizeWeights(weightList);
  const out = allocKernelFloat32(P) ?? new Float32Array(new SharedArrayBuffer(P * 4));
  const input = updates.map((a, k) => ({ arrays: [a], weight: weightList[k] as number }));
  return { updates, weightList, weights, out, input };
}

/** The kernel memory's page size advice and Linux's setting, for a bench's header and JSON. */
export function pageInfo(): {
  pages: PageAdvice | 'not grown yet' | 'no kernel memory';
  thp: string | null;
  line: string;
} {
  const pages = kernelMemory()?.pages ?? 'no kernel memory';
  const thp = hugePageSetting();
  const said: Record<string, string> = {
    advised: '2 MiB pages asked for (madvise)',
    always: '2 MiB pages (Linux gives them to all memory)',
    never: '4 KiB pages (Linux gives no larger ones)',
    off: '4 KiB pages (POLLEN_MADVISE_HUGEPAGE=0)',
    unavailable: '4 KiB pages (madvise cannot be called here)',
    refused: '4 KiB pages (madvise refused)',
  };
  return {
    pages,
    thp,
    line: `kernel memory: ${said[pages] ?? pages}; transparent_hugepage = ${thp ?? 'unknown'}`,
  };
}
