import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { PYTHON } from '../../test/support/python.js';
import { float16Bits, float16Round, float16Value, fromFloat16, toFloat16 } from './float16.js';

const hex = (bits: number): string => `0x${bits.toString(16).padStart(4, '0')}`;

describe('float16 conversion', () => {
  it('rounds known values to their IEEE 754 half-precision bits', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [1 / 3, 0x3555],
      [65504, 0x7bff], // largest finite
      [65519.99, 0x7bff], // below halfway to 65536: still finite
      [65520, 0x7c00], // halfway: ties to even, which is infinity
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -25, 0x0400], // rounds up from the subnormals into the normals
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway between 0 and it: ties to even, 0
      [3 * 2 ** -25, 0x0002], // halfway between 1 and 2 subnormal steps: even, 2
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and its successor: even, 1
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between 0x3c01 and 0x3c02: even, 0x3c02
      [1 + 2 ** -11 + 2 ** -40, 0x3c01], // just above halfway: up (no double rounding via float32)
      [Number.NaN, 0x7e00],
    ];
    for (const [value, bits] of cases) expect(hex(float16Bits(value)), String(value)).toBe(hex(bits));
    // float16Round gives the value of those bits, the sign of a zero included.
    for (const [value, bits] of cases) expect(float16Round(value), String(value)).toBe(float16Value(bits));
    expect(Object.is(float16Round(-(2 ** -26)), -0)).toBe(true);
    expect(Object.is(float16Value(0x8000), -0)).toBe(true);
    expect(float16Value(0x0001)).toBe(2 ** -24);
    expect(float16Value(0x03ff)).toBe(1023 * 2 ** -24);
    expect(float16Value(0x7bff)).toBe(65504);
    expect(float16Value(0xfc00)).toBe(-Infinity);
    expect(float16Value(0x7e01)).toBeNaN();
    expect(float16Value(0xfe00)).toBeNaN();
  });

  it('converts arrays both ways, every finite float16 exactly', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const values = fromFloat16(all);
    expect(values).toBeInstanceOf(Float32Array);
    const back = toFloat16(values);
    const changed = all.filter((b) => !Number.isNaN(values[b]!) && back[b] !== b);
    expect([...changed].map(hex)).toEqual([]);
    expect([...toFloat16([1, 0.1, 70000])].map(hex)).toEqual(['0x3c00', '0x2e66', '0x7c00']);
  });

  it("agrees with NumPy's float64 → float16 rounding and float16 values", () => {
    // Random magnitudes over the whole float16 range and beyond, exact halfway points and their
    // neighbours: the cases a rounding bug shows on.
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const inputs: number[] = [];
    for (let i = 0; i < 4000; i++) inputs.push((random() - 0.5) * 2 ** Math.floor(random() * 50 - 30));
    for (let b = 0; b < 0x7c00; b += 97) {
      const mid = (float16Value(b) + float16Value(b + 1)) / 2;
      inputs.push(mid, -mid, mid * (1 + 2 ** -45), mid * (1 - 2 ** -45));
    }
    const doubles = Buffer.from(Float64Array.from(inputs).buffer).toString('hex');
    const script = [
      'import sys, numpy as np',
      'x = np.frombuffer(bytes.fromhex(sys.stdin.read()), dtype="<f8")',
      'with np.errstate(over="ignore"): print(x.astype("<f2").view("<u2").tobytes().hex())',
      'print(np.arange(65536, dtype="<u2").view("<f2").astype("<f8").tobytes().hex())',
    ].join('\n');
    const [rounded, widened] = execFileSync(PYTHON, ['-c', script], {
      input: doubles,
      encoding: 'utf8',
      maxBuffer: 8 << 20,
    })
      .trim()
      .split('\n');
    const expected = new Uint16Array(Buffer.from(rounded!, 'hex').buffer.slice(0));
    expect(toFloat16(inputs)).toEqual(expected);
    const roundedWrong = inputs.filter((v, i) => !Object.is(float16Round(v), float16Value(expected[i]!)));
    expect(roundedWrong).toEqual([]);
    const values = new Float64Array(Buffer.from(widened!, 'hex').buffer.slice(0));
    const differ: string[] = [];
    for (let b = 0; b < 65536; b++)
      if (!Object.is(float16Value(b), values[b]) && !Number.isNaN(values[b]!)) differ.push(hex(b));
    expect(differ).toEqual([]);
  });
});
