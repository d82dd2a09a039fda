/**
 * One array of every dtype, with the values that break careless code (extremes, NaN payloads,
 * subnormals, -0) and the odd shapes (0-d, empty, several dimensions), and a bit-exact compare.
 */
import { expect } from 'vitest';
import { ArrayRecord, type DType, type TypedArray } from '../../src/sdk/records.js';

/** NumPy's `dtype.str` of each dtype, written out here rather than taken from the code under test. */
export const NUMPY_DESCR: Record<DType, string> = {
  float16: '<f2',
  float32: '<f4',
  float64: '<f8',
  int8: '|i1',
  int16: '<i2',
  int32: '<i4',
  int64: '<i8',
  uint8: '|u1',
  uint16: '<u2',
  uint32: '<u4',
  uint64: '<u8',
  bool: '|b1',
};

/** Every dtype with a 0-d, an empty and a 2-D array of awkward values. */
export function everyDType(): ArrayRecord {
  const nan32 = new Float32Array(new Uint32Array([0x7fc00001]).buffer)[0]!; // a NaN with a payload
  const arrays: [DType, TypedArray][] = [
    // float16 bits: 1, -2, 65504 (max), smallest subnormal, -0, +inf, a NaN with a payload
    ['float16', Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x7e01, 0x3555])],
    ['float32', Float32Array.from([1.5, -0, 3.4028234663852886e38, 1e-45, -Infinity, nan32, 0.1, 7])],
    ['float64', Float64Array.from([Math.PI, -0, Number.MAX_VALUE, 5e-324, Infinity, Number.NaN, 0.1, -7])],
    ['int8', Int8Array.from([-128, 127, 0, -1, 1, 2, 3, 4])],
    ['int16', Int16Array.from([-32768, 32767, 0, -1, 1, 2, 3, 4])],
    ['int32', Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 0, -1, 1, 2, 3, 4])],
    ['int64', BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 2n ** 53n + 1n, 2n, 3n, 4n])],
    ['uint8', Uint8Array.from([0, 255, 1, 2, 3, 4, 5, 6])],
    ['uint16', Uint16Array.from([0, 65535, 1, 2, 3, 4, 5, 6])],
    ['uint32', Uint32Array.from([0, 2 ** 32 - 1, 1, 2, 3, 4, 5, 6])],
    ['uint64', BigUint64Array.from([0n, 2n ** 64n - 1n, 2n ** 53n + 1n, 2n, 3n, 4n, 5n, 6n])],
    ['bool', Uint8Array.from([1, 0, 0, 1, 1, 1, 0, 1])],
  ];
  const record = new ArrayRecord();
  for (const [dtype, data] of arrays) {
    const ctor = data.constructor as new (n: number) => TypedArray;
    record.set(`${dtype}/matrix`, { dtype, shape: [2, 4], data } as never);
    record.set(`${dtype}/scalar`, { dtype, shape: [], data: data.slice(1, 2) } as never);
    record.set(`${dtype}/empty`, { dtype, shape: [3, 0], data: new ctor(0) } as never);
  }
  return record;
}

/** The raw bytes of a typed array (a view). */
export function bytesOf(data: TypedArray): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Same names in the same order, same dtypes and shapes, and the same bytes, NaN payloads too. */
export function expectSameArrays(actual: ArrayRecord, expected: ArrayRecord): void {
  expect([...actual.keys()]).toEqual([...expected.keys()]);
  for (const [name, e] of expected) {
    const a = actual.get(name)!;
    expect({ name, dtype: a.dtype, shape: a.shape }).toEqual({ name, dtype: e.dtype, shape: e.shape });
    expect(a.data.constructor).toBe(e.data.constructor);
    expect(bytesOf(a.data).equals(bytesOf(e.data)), `bytes of ${name}`).toBe(true);
  }
}
