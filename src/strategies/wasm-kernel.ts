/**
 * The float32 weighted-sum kernel as a WebAssembly SIMD module, assembled here from a few opcodes
 * (no toolchain: the module is eight small functions, and writing its bytes from this table is
 * shorter and easier to review than a checked-in binary).
 *
 * Each function does, for 2 × 2 elements per iteration, what the JavaScript loops of
 * aggregate.ts do per element, operation for operation: widen float32 to float64
 * (`f64x2.promote_low_f32x4`, exact), multiply by the float64 weight, add in the same order, round
 * to float32 once (`f32x4.demote_f64x2_zero`, nearest-even like a Float32Array store). WebAssembly
 * has no fused multiply-add in its deterministic SIMD set, and V8 does not fuse JavaScript
 * arithmetic either, so the results are bit for bit those of the JavaScript kernel.
 *
 * The functions work on slots inside the module's own memory (WebAssembly cannot read a
 * JavaScript ArrayBuffer): the caller copies a cache-sized chunk of each update into a slot and
 * the output chunk back out (wasm-sum.ts).
 */

/** Function names, by group size and form (see `KERNEL_FORMS`). */
export type KernelName = `${'set' | 'add'}${1 | 2 | 3 | 4}`;

/**
 * `fn(out, x0, x1, x2, x3, bytes, w0, w1, w2, w3)`: byte offsets of the output slot and the
 * inputs, the byte length (a multiple of 16) and the normalised weights; unused inputs ignored.
 * - `setM`: out = ((w0·x0 + w1·x1) + w2·x2) + w3·x3 over the first M inputs.
 * - `add4`: out = out + (((w0·x0 + w1·x1) + w2·x2) + w3·x3) (aggregate.ts `add4`).
 * - `add3`, `add2`, `add1`: out = ((out + w0·x0) + w1·x1) + w2·x2 (aggregate.ts `group3` …).
 */
export type KernelFn = (
  out: number,
  x0: number,
  x1: number,
  x2: number,
  x3: number,
  bytes: number,
  w0: number,
  w1: number,
  w2: number,
  w3: number,
) => void;

const KERNEL_FORMS: readonly { name: KernelName; inputs: number; add: 'none' | 'group' | 'each' }[] = [
  { name: 'set1', inputs: 1, add: 'none' },
  { name: 'set2', inputs: 2, add: 'none' },
  { name: 'set3', inputs: 3, add: 'none' },
  { name: 'set4', inputs: 4, add: 'none' },
  { name: 'add1', inputs: 1, add: 'each' },
  { name: 'add2', inputs: 2, add: 'each' },
  { name: 'add3', inputs: 3, add: 'each' },
  { name: 'add4', inputs: 4, add: 'group' },
];

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

const vec = (items: number[][]): number[] => [...leb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...leb(body.length), ...body];
const name = (s: string): number[] => [...leb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;
const simd = (op: number): number[] => [0xfd, ...leb(op)];
const OP = {
  localGet: (i: number) => [0x20, ...leb(i)],
  localSet: (i: number) => [0x21, ...leb(i)],
  i32Const: (v: number) => [0x41, ...leb(v)], // small non-negative constants only (sign bit clear)
  i32Add: [0x6a],
  i32GeU: [0x4f],
  /** v128.load64_zero at local `ptr` + local `i` + `offset` (align 2^3). */
  load64: (ptr: number, i: number, offset: number) => [
    ...OP.localGet(ptr),
    ...OP.localGet(i),
    ...OP.i32Add,
    ...simd(0x5d),
    3,
    ...leb(offset),
  ],
  /** v128.store64_lane lane 0 of the value on the stack, same addressing. */
  store64: (offset: number) => [...simd(0x5b), 3, ...leb(offset), 0],
  promote: simd(0x5f), // f64x2.promote_low_f32x4
  demote: simd(0x5e), // f32x4.demote_f64x2_zero
  splat: simd(0x14), // f64x2.splat
  add: simd(0xf0), // f64x2.add
  mul: simd(0xf2), // f64x2.mul
};

// Parameters: 0 out, 1..4 x0..x3, 5 bytes, 6..9 w0..w3; locals: 10 i (i32), 11..14 weights (v128).
const P_OUT = 0;
const P_BYTES = 5;
const L_I = 10;
const L_W = 11;

/** 2 elements at `offset` bytes past i: the formula of `form`, stored into the output slot. */
function twoElements(form: (typeof KERNEL_FORMS)[number], offset: number): number[] {
  const term = (k: number) => [
    ...OP.load64(1 + k, L_I, offset),
    ...OP.promote,
    ...OP.localGet(L_W + k),
    ...OP.mul,
  ];
  const out = [...OP.load64(P_OUT, L_I, offset), ...OP.promote];
  // The store address first, then (for the add forms) the output, so the sum lands above it.
  const code: number[] = [...OP.localGet(P_OUT), ...OP.localGet(L_I), ...OP.i32Add];
  if (form.add !== 'none') code.push(...out);
  for (let k = 0; k < form.inputs; k++) {
    code.push(...term(k));
    if (k > 0 || form.add === 'each') code.push(...OP.add);
  }
  if (form.add === 'group') code.push(...OP.add);
  code.push(...OP.demote, ...OP.store64(offset));
  return code;
}

function body(form: (typeof KERNEL_FORMS)[number]): number[] {
  const code: number[] = [];
  for (let k = 0; k < 4; k++) code.push(...OP.localGet(6 + k), ...OP.splat, ...OP.localSet(L_W + k));
  code.push(0x02, 0x40, 0x03, 0x40); // block, loop
  code.push(...OP.localGet(L_I), ...OP.localGet(P_BYTES), ...OP.i32GeU, 0x0d, 1); // br_if out
  code.push(...twoElements(form, 0), ...twoElements(form, 8));
  code.push(...OP.localGet(L_I), ...OP.i32Const(16), ...OP.i32Add, ...OP.localSet(L_I));
  code.push(0x0c, 0, 0x0b, 0x0b); // br loop, end loop, end block
  const locals = vec([
    [1, I32],
    [4, V128],
  ]);
  const fn = [...locals, ...code, 0x0b];
  return [...leb(fn.length), ...fn];
}

/** The module's bytes: one memory of `pages` × 64 KiB exported as "memory", the eight functions. */
export function kernelModule(pages: number): Uint8Array<ArrayBuffer> {
  const type = [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [I32], [F64], [F64], [F64], [F64]]), 0];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([type])),
    ...section(3, vec(KERNEL_FORMS.map(() => [0]))),
    ...section(5, vec([[0x00, ...leb(pages)]])),
    ...section(
      7,
      vec([[...name('memory'), 0x02, 0], ...KERNEL_FORMS.map((f, i) => [...name(f.name), 0x00, ...leb(i)])]),
    ),
    ...section(10, vec(KERNEL_FORMS.map(body))),
  ]);
}
