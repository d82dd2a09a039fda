/**
 * The averaging kernel's tuning knobs side by side, in one process with the variants interleaved
 * round by round (so a busy machine slows them alike): the float32 unroll (vectors per loop
 * iteration of the WebAssembly module) and the tile (elements summed over all K updates while
 * their accumulator stays in cache), beside the float64 accumulator and a memory copy. Updates
 * in the kernel's memory, read in place, and in ordinary memory (copied in per tile); one thread. GB/s of updates read, median and fastest of
 * the rounds. Not part of the test suite.
 *
 *   npx tsx bench/fedavg-variants.ts                     K = 100 × P = 1M
 *   npx tsx bench/fedavg-variants.ts --k 10 --p 10000000 --rounds 21
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { normalizeWeights, type Precision } from '../src/strategies/aggregate.js';
import { kernelMemory } from '../src/strategies/kernel-memory.js';
import { GROUP, type KernelExports, kernelModule } from '../src/strategies/wasm-kernel.js';
import { type Kernel, wasmAverageRange } from '../src/strategies/wasm-sum.js';

const { values } = parseArgs({
  options: {
    k: { type: 'string', default: '100' },
    p: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '15' },
  },
});
const [K, P, rounds] = [Number(values.k), Number(values.p), Number(values.rounds)];
const memory = kernelMemory();
if (memory === null) throw new Error('No shared WebAssembly memory here');
const pool = memory.allocFloat32(K * P);
const out = memory.allocFloat32(P);
const MAX_TILE = 1 << 19;
const scratch = memory.allocate(MAX_TILE * 8 + 5 * MAX_TILE * 4);
if (pool === null || out === null || scratch === null) throw new Error(`No room for ${K * P * 4} bytes`);
const updates = Array.from(
  { length: K },
  (_, k) => new Float32Array(pool.buffer, pool.byteOffset + k * P * 4, P),
);
updates.forEach((a, k) => {
  for (let i = 0; i < P; i++) a[i] = ((i * 7 + k) % 1000) / 1000;
});
const ws = normalizeWeights(updates.map((_, k) => k + 1));
const addrs = updates.map((u) => memory.addressOf(u));
const oAddr = memory.addressOf(out);

const modules = new Map<number, WebAssembly.Module>();
function kernel(unroll: number, tile: number, group = GROUP): Kernel {
  let module = modules.get(unroll);
  if (module === undefined) {
    module = new WebAssembly.Module(kernelModule(unroll));
    modules.set(unroll, module);
  }
  const fns = new WebAssembly.Instance(module, { env: { memory: memory!.memory } })
    .exports as unknown as KernelExports;
  return { memory: memory!.memory, fns, scratch: scratch!.start, tile, unroll, group, inputs: GROUP };
}

const variants: { name: string; run: () => void }[] = [];
const copy = new Float32Array(P);
variants.push({
  name: 'memory copy (Float32Array.set)',
  run: () => {
    for (const u of updates) copy.set(u);
  },
});
for (const [precision, unrolls] of [
  ['float32', [1, 2, 4]],
  ['float64', [2]],
] as [Precision, number[]][])
  for (const unroll of unrolls)
    for (const tile of [1 << 15, 1 << 16, 1 << 17, 1 << 18])
      for (const group of [4, GROUP]) {
        const k = kernel(unroll, tile, group);
        const name = `${precision}${precision === 'float32' ? `, unroll ${unroll}` : ''}, tile ${tile}, ${group} per call`;
        variants.push({
          name,
          run: () => wasmAverageRange(k, out, oAddr, updates, addrs, ws, 0, P, precision),
        });
      }

// Updates in ordinary memory (an app's own arrays): copied into the module's slots tile by tile.
const plain = updates.map((u) => u.slice());
const nowhere = plain.map(() => -1);
// (Four per call: wasm-sum.ts copies at most four updates into slots per call.)
for (const tile of [1 << 15, 1 << 16, 1 << 17]) {
  const k = kernel(2, tile);
  variants.push({
    name: `float32, ordinary memory, tile ${tile}`,
    run: () => wasmAverageRange(k, out, oAddr, plain, nowhere, ws, 0, P, 'float32'),
  });
}

const times = variants.map(() => [] as number[]);
for (let r = 0; r < rounds; r++)
  variants.forEach((v, i) => {
    const t = performance.now();
    v.run();
    (times[i] as number[]).push(performance.now() - t);
  });
const gbps = (ms: number) => ((K * P * 4) / ms / 1e6).toFixed(2);
console.log(`K = ${K} × P = ${P}, ${rounds} rounds, load ${loadavg()[0]?.toFixed(2)}`);
variants.forEach((v, i) => {
  const ts = (times[i] as number[]).sort((a, b) => a - b);
  const median = ts[Math.floor(ts.length / 2)] as number;
  console.log(
    `${v.name.padEnd(52)} median ${gbps(median).padStart(6)} GB/s   best ${gbps(ts[0] as number).padStart(6)} GB/s`,
  );
});
