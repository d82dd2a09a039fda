/**
 * The float32 weighted-sum kernel as a WebAssembly SIMD module, assembled here from a few opcodes
 * (no toolchain: the module is thirty-three small functions, and writing its bytes from this table
 * is shorter and easier to review than a checked-in binary).
 *
 * The module imports one shared memory (kernel-memory.ts), the memory that received updates are
 * decoded into, so the functions read every update where it lies: no copy before the sum.
 *
 * Two arithmetics, each per element exactly that of `averageRangeJs` in aggregate.ts:
 * - float32 (`f32setM`/`f32addM`, the default): Flower's. Weights rounded to float32,
 *   `acc = w_0 · x_0`, then `acc = acc + w_k · x_k` reply by reply, every product and sum rounded
 *   to float32 (`f32x4.mul`, `f32x4.add`), four elements per instruction.
 * - float64 (`setM`/`addM`, then `store`): a float64 accumulator in the same order (float32 widened
 *   exactly with `f64x2.promote_low_f32x4`), rounded to float32 once at the end
 *   (`f32x4.demote_f64x2_zero`, nearest-even like a Float32Array store).
 * WebAssembly's deterministic SIMD has no fused multiply-add and V8 does not fuse JavaScript
 * arithmetic, so the bits are those of the JavaScript loop. Each float64 loop iteration does 8
 * elements (4 × 2 lanes), each float32 one 4 × `unroll` elements.
 */

/**
 * Function names: `setM`/`addM` sum M replies into a float64 tile, `store` rounds it out;
 * `f32setM`/`f32addM` sum M replies into a float32 tile (the output itself where it can be).
 */
export type KernelName = `${'set' | 'add'}${GroupSize}` | 'store' | `f32${'set' | 'add'}${GroupSize}`;

/** Inputs one call of a group function sums (1 … GROUP). */
export type GroupSize = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;

/**
 * The most inputs one call sums: each call reads and writes its accumulator tile once, so eight
 * inputs per call halve the accumulator's traffic of four (docs/benchmarks.md).
 */
export const GROUP = 8;

/**
 * `fn(acc, x0, …, x7, bytes, w0, …, w7)`: byte addresses of the float64 accumulator tile
 * and of the float32 inputs, the inputs' byte length (a multiple of 32) and the weights; unused
 * inputs ignored. `setM`: acc = ((w0·x0 + w1·x1) + …) over the first M inputs; `addM`:
 * acc = (((acc + w0·x0) + w1·x1) + …).
 */
export type GroupFn = (acc: number, ...xsBytesWeights: number[]) => void;

/** `store(out, acc, bytes)`: float32 out = the float64 tile rounded, `bytes` of output (× 32). */
export type StoreFn = (out: number, acc: number, bytes: number) => void;

export type KernelExports = Record<Exclude<KernelName, 'store'>, GroupFn> & { store: StoreFn };

interface Group {
  name: KernelName;
  inputs: number;
  set: boolean;
  f32: boolean;
}

const GROUPS: readonly Group[] = [false, true].flatMap((f32) =>
  Array.from({ length: GROUP }, (_, i) => i + 1).flatMap((m) =>
    (['set', 'add'] as const).map((op) => ({
      name: `${f32 ? 'f32' : ''}${op}${m}` as KernelName,
      inputs: m,
      set: op === 'set',
      f32,
    })),
  ),
);

/** Elements per loop iteration (the ×4 unroll of 2-lane float64 steps). */
export const KERNEL_STEP = 8;

/**
 * float32 vectors (4 elements) per loop iteration of the `f32` functions; their byte counts must
 * be a multiple of 16 × this. 1, 2, 4 and 8 measured alike (the sum waits on memory, not on
 * instructions; docs/benchmarks.md): 2 leaves the shortest scalar tail of the unrolled ones.
 */
export const F32_UNROLL = 2;

// ------------------------------------------------------------------------------ encoding

/** Unsigned LEB128, as the binary format writes indices, sizes and SIMD opcodes. */
function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128, as `i32.const` reads its operand (64 needs two bytes: 0x40 alone is −64). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

const vec = (items: number[][]): number[] => [...leb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...leb(body.length), ...body];
const name = (s: string): number[] => [...leb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

const I32 = 0x7f;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;
const simd = (op: number): number[] => [0xfd, ...leb(op)];
const OP = {
  get: (i: number) => [0x20, ...leb(i)],
  set: (i: number) => [0x21, ...leb(i)],
  i32Const: (v: number) => [0x41, ...sleb(v)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Eqz: [0x45],
  v128Load: (offset: number) => [...simd(0x00), 4, ...leb(offset)],
  v128Store: (offset: number) => [...simd(0x0b), 4, ...leb(offset)],
  load64Zero: (offset: number) => [...simd(0x5d), 3, ...leb(offset)], // v128.load64_zero
  store64Lane: (offset: number) => [...simd(0x5b), 3, ...leb(offset), 0], // lane 0
  promote: simd(0x5f), // f64x2.promote_low_f32x4
  demote: simd(0x5e), // f32x4.demote_f64x2_zero
  splat: simd(0x14), // f64x2.splat
  add: simd(0xf0), // f64x2.add
  mul: simd(0xf2), // f64x2.mul
  splat32: simd(0x13), // f32x4.splat
  add32: simd(0xe4), // f32x4.add
  mul32: simd(0xe6), // f32x4.mul
};

/** `block loop (br_if out when local n is 0) BODY (advance) br loop end end`. */
function countedLoop(n: number, body: number[], advance: number[]): number[] {
  return [
    0x02,
    0x40,
    0x03,
    0x40,
    ...OP.get(n),
    ...OP.i32Eqz,
    0x0d,
    1,
    ...body,
    ...advance,
    0x0c,
    0,
    0x0b,
    0x0b,
  ];
}

/** `local += step` for an i32 local (a pointer or a count). */
const bump = (local: number, step: number, sub = false): number[] => [
  ...OP.get(local),
  ...OP.i32Const(step),
  ...(sub ? OP.i32Sub : OP.i32Add),
  ...OP.set(local),
];

// Group functions: params 0 acc, 1..GROUP the inputs, then bytes, then GROUP weights; then locals,
// the weights splat.
const P_ACC = 0;
const P_BYTES = GROUP + 1;
const P_W = GROUP + 2;
const L_W = 2 * GROUP + 2;

function groupBody(form: Group, unroll: number): number[] {
  if (form.f32) return groupBody32(form, unroll);
  const code: number[] = [];
  for (let k = 0; k < form.inputs; k++) code.push(...OP.get(P_W + k), ...OP.splat, ...OP.set(L_W + k));
  const body: number[] = [];
  for (let c = 0; c < KERNEL_STEP / 2; c++) {
    // Two elements: address of the store, the running sum, then one term per input, added in order.
    body.push(...OP.get(P_ACC));
    if (!form.set) body.push(...OP.get(P_ACC), ...OP.v128Load(c * 16));
    for (let k = 0; k < form.inputs; k++) {
      body.push(...OP.get(1 + k), ...OP.load64Zero(c * 8), ...OP.promote, ...OP.get(L_W + k), ...OP.mul);
      if (k > 0 || !form.set) body.push(...OP.add);
    }
    body.push(...OP.v128Store(c * 16));
  }
  const advance = [...bump(P_ACC, KERNEL_STEP * 8)];
  for (let k = 0; k < form.inputs; k++) advance.push(...bump(1 + k, KERNEL_STEP * 4));
  advance.push(...bump(P_BYTES, KERNEL_STEP * 4, true));
  code.push(...countedLoop(P_BYTES, body, advance));
  return fn([[form.inputs, V128]], code);
}

/**
 * The float32 form: per 4 elements, `acc = (((acc + w0·x0) + w1·x1) + …)` (`set`: from `w0·x0`),
 * each product and sum rounded to float32; loads before the store, so `acc` may be one of the
 * inputs of the same call.
 */
function groupBody32(form: Group, unroll: number): number[] {
  const code: number[] = [];
  for (let k = 0; k < form.inputs; k++) code.push(...OP.get(P_W + k), ...OP.splat32, ...OP.set(L_W + k));
  const body: number[] = [];
  for (let c = 0; c < unroll; c++) {
    body.push(...OP.get(P_ACC));
    if (!form.set) body.push(...OP.get(P_ACC), ...OP.v128Load(c * 16));
    for (let k = 0; k < form.inputs; k++) {
      body.push(...OP.get(1 + k), ...OP.v128Load(c * 16), ...OP.get(L_W + k), ...OP.mul32);
      if (k > 0 || !form.set) body.push(...OP.add32);
    }
    body.push(...OP.v128Store(c * 16));
  }
  const advance = [...bump(P_ACC, unroll * 16)];
  for (let k = 0; k < form.inputs; k++) advance.push(...bump(1 + k, unroll * 16));
  advance.push(...bump(P_BYTES, unroll * 16, true));
  code.push(...countedLoop(P_BYTES, body, advance));
  return fn([[form.inputs, V128]], code);
}

// store: params 0 out, 1 acc, 2 bytes.
function storeBody(): number[] {
  const body: number[] = [];
  for (let c = 0; c < KERNEL_STEP / 2; c++)
    body.push(...OP.get(0), ...OP.get(1), ...OP.v128Load(c * 16), ...OP.demote, ...OP.store64Lane(c * 8));
  const advance = [
    ...bump(0, KERNEL_STEP * 4),
    ...bump(1, KERNEL_STEP * 8),
    ...bump(2, KERNEL_STEP * 4, true),
  ];
  return fn([], countedLoop(2, body, advance));
}

function fn(locals: number[][], code: number[]): number[] {
  const f = [...vec(locals), ...code, 0x0b];
  return [...leb(f.length), ...f];
}

/** The largest memory a 32-bit WebAssembly module addresses: 65,536 pages of 64 KiB (4 GiB). */
export const MAX_PAGES = 65536;

/**
 * The module's bytes: imports `env.memory` (shared, at most MAX_PAGES), exports the functions;
 * `unroll` is the float32 functions' vectors per iteration.
 */
export function kernelModule(unroll = F32_UNROLL): Uint8Array<ArrayBuffer> {
  const i32s = (n: number) => Array.from({ length: n }, () => [I32]);
  const params = (w: number) => vec([...i32s(GROUP + 2), ...Array.from({ length: GROUP }, () => [w])]);
  const groupType = [0x60, ...params(F64), 0];
  const group32Type = [0x60, ...params(F32), 0];
  const storeType = [0x60, ...vec([[I32], [I32], [I32]]), 0];
  const memoryImport = [...name('env'), ...name('memory'), 0x02, 0x03, ...leb(1), ...leb(MAX_PAGES)];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([groupType, storeType, group32Type])),
    ...section(2, vec([memoryImport])),
    ...section(3, vec([...GROUPS.map((g) => [g.f32 ? 2 : 0]), [1]])),
    ...section(
      7,
      vec([
        ...GROUPS.map((g, i) => [...name(g.name), 0x00, ...leb(i)]),
        [...name('store'), 0x00, ...leb(GROUPS.length)],
      ]),
    ),
    ...section(10, vec([...GROUPS.map((g) => groupBody(g, unroll)), storeBody()])),
  ]);
}
