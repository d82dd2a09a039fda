/** The updates of the FedAvg benches (bench/fedavg.ts, bench/fedavg-targets.ts) and their sizes. */

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
