import { describe, expect, it } from 'vitest';
import { bytesOf, everyDType, expectSameArrays } from '../../test/support/dtypes.js';
import { PollenError } from '../errors.js';
import { decodeArrayRecord, encodeArrayRecord } from './array-encoding.js';
import { ArrayRecord, ConfigRecord, DTYPES, MetricRecord, RecordDict } from './records.js';

function expectInvalid(fn: () => unknown, text?: string | RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PollenError);
    expect((e as PollenError).code).toBe('RECORD_INVALID');
    if (text !== undefined) expect((e as PollenError).message).toMatch(text);
    return;
  }
  throw new Error('expected RECORD_INVALID');
}

function sample(): ArrayRecord {
  return new ArrayRecord()
    .set('dense/kernel', { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, -6.5]) })
    .set('dense/bias', { dtype: 'float64', shape: [3], data: Float64Array.from([0.1, 0.2, Math.PI]) })
    .set('steps', { dtype: 'int64', shape: [], data: BigInt64Array.from([2n ** 62n]) })
    .set('mask', { dtype: 'uint8', shape: [5], data: Uint8Array.from([1, 0, 1, 1, 255]) })
    .set('counts', { dtype: 'int32', shape: [1, 2], data: Int32Array.from([-7, 2 ** 31 - 1]) })
    .set('empty', { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) });
}

describe('ArrayRecord', () => {
  it('keeps insertion order, types get() by dtype and counts bytes', () => {
    const r = sample();
    expect([...r.keys()]).toEqual(['dense/kernel', 'dense/bias', 'steps', 'mask', 'counts', 'empty']);
    expect(r.size).toBe(6);
    expect(r.byteLength).toBe(24 + 24 + 8 + 5 + 8 + 0);
    const k = r.get('dense/kernel', 'float32');
    expect(k?.data[5]).toBe(-6.5);
    expect(k?.shape).toEqual([2, 3]);
    expect(r.get('missing')).toBeUndefined();
    expectInvalid(() => r.get('dense/kernel', 'float64'), /is float32, not float64/);
    expect(r.delete('mask')).toBe(true);
    expect(r.has('mask')).toBe(false);
  });

  it('builds from plain typed arrays', () => {
    const r = ArrayRecord.fromArrays({
      w: { data: new Float32Array(6), shape: [3, 2] },
      b: new Float64Array(2),
      n: new BigInt64Array(1),
    });
    expect(r.get('w')).toMatchObject({ dtype: 'float32', shape: [3, 2] });
    expect(r.get('b')).toMatchObject({ dtype: 'float64', shape: [2] });
    expect(r.get('n')?.dtype).toBe('int64');
    expectInvalid(() => ArrayRecord.fromArrays({ x: new Uint8ClampedArray(2) as never }), /Float32Array/);
    expectInvalid(() => ArrayRecord.fromArrays({ x: [1, 2] as never }), /Float32Array/);
  });

  it('infers every integer dtype from its typed array; float16 and bool are named', () => {
    const r = ArrayRecord.fromArrays({
      i8: new Int8Array(1),
      i16: new Int16Array(1),
      u16: new Uint16Array(1),
      u32: new Uint32Array(1),
      u64: new BigUint64Array(1),
      u8: new Uint8Array(1),
      half: { data: Uint16Array.from([0x3c00]), dtype: 'float16' },
      flags: { data: Uint8Array.from([1, 0]), dtype: 'bool', shape: [2, 1] },
    });
    expect([...r].map(([n, e]) => `${n}:${e.dtype}`)).toEqual([
      'i8:int8',
      'i16:int16',
      'u16:uint16',
      'u32:uint32',
      'u64:uint64',
      'u8:uint8',
      'half:float16',
      'flags:bool',
    ]);
    expect(r.get('flags')?.shape).toEqual([2, 1]);
    expectInvalid(() => r.get('half', 'uint16'), /is float16, not uint16/);
  });

  it('holds bool arrays as bytes 0 and 1 only', () => {
    const r = new ArrayRecord();
    r.set('ok', { dtype: 'bool', shape: [3], data: Uint8Array.from([0, 1, 1]) });
    expectInvalid(
      () => r.set('b', { dtype: 'bool', shape: [3], data: Uint8Array.from([0, 1, 2]) }),
      /Array "b": bool element 2 is 2; bool bytes must be 0 or 1/,
    );
    expectInvalid(
      () => r.set('b', { dtype: 'bool', shape: [1], data: new Uint16Array(1) as never }),
      /Uint8Array for dtype bool/,
    );
    expect(r.has('b')).toBe(false);
  });

  it('refuses bad names, dtypes, shapes and data', () => {
    const r = new ArrayRecord();
    const ok = { dtype: 'float32' as const, shape: [2], data: new Float32Array(2) };
    expectInvalid(() => r.set('', ok), /1-256/);
    expectInvalid(() => r.set('x'.repeat(257), ok), /1-256/);
    expectInvalid(() => r.set('a\nb', ok), /control character/);
    expectInvalid(
      () => r.set('x', { ...ok, dtype: 'complex64' as never }),
      /dtype must be one of float16, float32, float64, int8, int16, int32, int64, uint8, uint16, uint32, uint64, bool$/,
    );
    expectInvalid(() => r.set('x', { ...ok, dtype: 'constructor' as never }), /dtype must be one of/);
    expectInvalid(
      () => r.set('x', { ...ok, data: new Float64Array(2) as never }),
      /Float32Array for dtype float32/,
    );
    expectInvalid(() => r.set('x', { ...ok, shape: [3] }), /holds 3 values but data has 2/);
    expectInvalid(() => r.set('x', { ...ok, shape: [-1, -2] }), /non-negative integers/);
    expectInvalid(() => r.set('x', { ...ok, shape: [2.5] }), /non-negative integers/);
    expectInvalid(() => r.set('x', { ...ok, shape: new Array(33).fill(1) }), /at most 32/);
    expectInvalid(() => r.set('x', null as never), /must be an object/);
    expect(r.size).toBe(0);
    // A Buffer is a Uint8Array: accepted for uint8.
    r.set('buf', { dtype: 'uint8', shape: [3], data: Buffer.from([1, 2, 3]) });
    expect(r.get('buf', 'uint8')?.data.length).toBe(3);
  });

  it('holds data by reference and clone() copies it', () => {
    const data = new Float32Array(2);
    const r = new ArrayRecord({ w: { dtype: 'float32', shape: [2], data } });
    const c = r.clone();
    data[0] = 9;
    expect(r.get('w', 'float32')?.data[0]).toBe(9);
    expect(c.get('w', 'float32')?.data[0]).toBe(0);
  });
});

describe('ArrayRecord encoding', () => {
  it('round-trips every dtype, keeping order, shapes and values', () => {
    const r = sample();
    const bytes = encodeArrayRecord(r);
    expect(bytes.length % 8).toBe(0);
    for (const copy of [true, false]) {
      const back = decodeArrayRecord(bytes, { copy });
      expect([...back.keys()]).toEqual([...r.keys()]);
      for (const [name, e] of r) {
        const d = back.get(name)!;
        expect(d.dtype).toBe(e.dtype);
        expect(d.shape).toEqual(e.shape);
        expect(Array.from(d.data as ArrayLike<number | bigint>)).toEqual(
          Array.from(e.data as ArrayLike<number | bigint>),
        );
      }
    }
  });

  it('round-trips every dtype bit-exactly (NaN payloads, -0, extremes), 0-d and empty arrays', () => {
    const r = everyDType();
    const bytes = encodeArrayRecord(r);
    for (const copy of [true, false]) expectSameArrays(decodeArrayRecord(bytes, { copy }), r);
    expect(Buffer.from(encodeArrayRecord(decodeArrayRecord(bytes))).equals(Buffer.from(bytes))).toBe(true);
  });

  it('round-trips a large float16 array without copying when aligned', () => {
    const data = new Uint16Array(3_000_001).map((_, i) => i & 0xffff);
    const r = new ArrayRecord().set('big', { dtype: 'float16', shape: [3_000_001], data });
    const bytes = encodeArrayRecord(r);
    const back = decodeArrayRecord(bytes, { copy: false }).get('big', 'float16')!;
    expect(back.data.buffer).toBe(bytes.buffer);
    expect(bytesOf(back.data).equals(bytesOf(data))).toBe(true);
  });

  it('keeps the original dtype codes and appends the new ones', () => {
    expect(Object.fromEntries(Object.entries(DTYPES).map(([d, i]) => [d, [i.code, i.bytes]]))).toEqual({
      float32: [1, 4],
      float64: [2, 8],
      int32: [3, 4],
      int64: [4, 8],
      uint8: [5, 1],
      float16: [6, 2],
      int8: [7, 1],
      int16: [8, 2],
      uint16: [9, 2],
      uint32: [10, 4],
      uint64: [11, 8],
      bool: [12, 1],
    });
  });

  it('refuses a bool byte other than 0 or 1 and an unknown dtype code', () => {
    const r = new ArrayRecord().set('f', { dtype: 'bool', shape: [2], data: Uint8Array.from([1, 0]) });
    const bytes = encodeArrayRecord(r);
    const dataStart = new DataView(bytes.buffer).getUint32(12, true);
    const bad = bytes.slice();
    bad[dataStart + 1] = 7;
    expectInvalid(() => decodeArrayRecord(bad), /Array "f": bool element 1 is 7/);
    const unknown = bytes.slice();
    unknown[16 + 2 + 1] = 13; // dtype code after the u16 name length and the 1-byte name
    expectInvalid(() => decodeArrayRecord(unknown), /unknown dtype code 13/);
  });

  it('is deterministic, canonical and 8-byte aligned', () => {
    const a = encodeArrayRecord(sample());
    const b = encodeArrayRecord(decodeArrayRecord(a));
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
    const view = new DataView(a.buffer);
    expect(Buffer.from(a.subarray(0, 4)).toString()).toBe('PLAR');
    expect(view.getUint32(8, true)).toBe(6);
    const dataStart = view.getUint32(12, true);
    expect(dataStart % 8).toBe(0);
    // The first array's raw little-endian float32 values start right at dataStart.
    expect(view.getFloat32(dataStart + 20, true)).toBe(-6.5);
    expect(encodeArrayRecord(new ArrayRecord()).length).toBe(16);
    expect(decodeArrayRecord(encodeArrayRecord(new ArrayRecord())).size).toBe(0);
  });

  it('decodes without copying when asked and aligned, and copies by default', () => {
    const bytes = encodeArrayRecord(sample());
    const view = decodeArrayRecord(bytes, { copy: false }).get('dense/kernel', 'float32')!;
    expect(view.data.buffer).toBe(bytes.buffer);
    const copied = decodeArrayRecord(bytes).get('dense/kernel', 'float32')!;
    expect(copied.data.buffer).not.toBe(bytes.buffer);
    // Unaligned input still decodes (by copying).
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const odd = decodeArrayRecord(shifted.subarray(1), { copy: false }).get('dense/bias', 'float64')!;
    expect(odd.data[2]).toBe(Math.PI);
  });

  it('refuses malformed input with RECORD_INVALID', () => {
    const good = encodeArrayRecord(sample());
    const mutate = (f: (b: Uint8Array, v: DataView) => void): Uint8Array => {
      const b = good.slice();
      f(b, new DataView(b.buffer));
      return b;
    };
    const dataStart = new DataView(good.buffer).getUint32(12, true);
    expectInvalid(() => decodeArrayRecord(new Uint8Array(3)), /too short/);
    expectInvalid(() => decodeArrayRecord(mutate((b) => (b[0] = 0x51))), /bad magic/);
    expectInvalid(() => decodeArrayRecord(mutate((b) => (b[4] = 2))), /version/);
    expectInvalid(() => decodeArrayRecord(mutate((b) => (b[6] = 1))), /reserved/);
    expectInvalid(() => decodeArrayRecord(mutate((_, v) => v.setUint32(8, 0xffffffff, true))), /count/);
    expectInvalid(() => decodeArrayRecord(mutate((_, v) => v.setUint32(12, 12, true))), /data offset/);
    expectInvalid(() => decodeArrayRecord(good.subarray(0, good.length - 8)), /overruns|missing/);
    const longer = new Uint8Array(good.length + 8);
    longer.set(good);
    expectInvalid(() => decodeArrayRecord(longer), /trailing/);
    // First entry: u16 name length at 16, name (12 bytes) at 18, dtype code at 30, ndim at 31.
    expectInvalid(() => decodeArrayRecord(mutate((b) => (b[30] = 99))), /unknown dtype/);
    expectInvalid(() => decodeArrayRecord(mutate((b) => (b[31] = 40))), /too many dimensions/);
    expectInvalid(
      () => decodeArrayRecord(mutate((_, v) => v.setBigUint64(32, 3n, true))),
      /does not match its shape/,
    );
    expectInvalid(
      () => decodeArrayRecord(mutate((_, v) => v.setBigUint64(32, 2n ** 60n, true))),
      /out of range|shape/,
    );
    expectInvalid(() => decodeArrayRecord(mutate((_, v) => v.setUint16(16, 60000, true))), /overruns/);
    expectInvalid(() => decodeArrayRecord(mutate((b) => (b[18] = 0xff))), /UTF-8/);
    expectInvalid(() => decodeArrayRecord(mutate((b) => (b[18] = 0x0a))), /control character/);
    // Non-zero padding after the 5-byte uint8 array "mask" (data offset 56 → padding 61..63).
    expectInvalid(() => decodeArrayRecord(mutate((b) => (b[dataStart + 61] = 1))), /padding/);
    // A duplicate name: rename "dense/bias" (second entry) to "dense/kernel"'s 12 bytes is not possible
    // with a different length, so encode a record with two names and patch the second to the first.
    const two = encodeArrayRecord(ArrayRecord.fromArrays({ aa: new Uint8Array(1), ab: new Uint8Array(1) }));
    const dup = two.slice();
    const secondName = 16 + 2 + 2 + 2 + 8 + 16 + 2; // after entry 1 (name 2 bytes, ndim 1)
    expect(Buffer.from(dup.subarray(secondName, secondName + 2)).toString()).toBe('ab');
    dup[secondName + 1] = 'a'.charCodeAt(0);
    expectInvalid(() => decodeArrayRecord(dup), /duplicate/);
    expectInvalid(() => decodeArrayRecord('nope' as never), /Uint8Array/);
  });
});

describe('MetricRecord and ConfigRecord', () => {
  it('accept valid values and copy lists in', () => {
    const list = [0.5, 0.25];
    const m = new MetricRecord({ loss: 0.5, accuracy: 0.9, 'num-examples': 100, history: list });
    list.push(1);
    expect(m.get('history')).toEqual([0.5, 0.25]);
    expect(m.toObject()).toEqual({ loss: 0.5, accuracy: 0.9, 'num-examples': 100, history: [0.5, 0.25] });
    const bytes = Uint8Array.from([1, 2]);
    const c = new ConfigRecord({
      lr: 0.01,
      optimizer: 'sgd',
      nesterov: true,
      seed: bytes,
      layers: [64, 32],
      tags: [],
    });
    bytes[0] = 9;
    expect(c.get('seed')).toEqual(Uint8Array.from([1, 2]));
    expect(c.get('layers')).toEqual([64, 32]);
    expect([...c.keys()]).toEqual(['lr', 'optimizer', 'nesterov', 'seed', 'layers', 'tags']);
  });

  it('refuse bad names and values', () => {
    expectInvalid(() => new MetricRecord({ '': 1 }), /Metric name/);
    expectInvalid(() => new MetricRecord({ loss: Number.NaN }), /finite number/);
    expectInvalid(() => new MetricRecord({ loss: [1, Number.POSITIVE_INFINITY] }), /finite number/);
    expectInvalid(() => new MetricRecord({ loss: '1' as never }), /finite number/);
    expectInvalid(() => new ConfigRecord({ 'a\u0000': 1 }), /Config name/);
    expectInvalid(() => new ConfigRecord({ x: null as never }), /must be a number, string/);
    expectInvalid(() => new ConfigRecord({ x: { a: 1 } as never }), /must be a number, string/);
    expectInvalid(() => new ConfigRecord({ x: [1, 'a'] as never }), /one kind/);
    expectInvalid(() => new ConfigRecord({ x: [[1]] as never }), /must be a number, string/);
    expectInvalid(() => new ConfigRecord({ x: Number.NaN }), /finite/);
  });
});

describe('RecordDict', () => {
  it('holds named records of the three kinds with typed access', () => {
    const d = new RecordDict({
      arrays: ArrayRecord.fromArrays({ w: new Float32Array(2) }),
      metrics: new MetricRecord({ loss: 1 }),
      config: new ConfigRecord({ lr: 0.1 }),
    });
    expect(d.getArrayRecord('arrays')?.size).toBe(1);
    expect(d.getMetricRecord('metrics')?.get('loss')).toBe(1);
    expect(d.getConfigRecord('config')?.get('lr')).toBe(0.1);
    expect(d.getArrayRecord('nope')).toBeUndefined();
    expectInvalid(() => d.getArrayRecord('metrics'), /is a metric record, not array/);
    expect([...d.arrayRecords.keys()]).toEqual(['arrays']);
    expect([...d.metricRecords.keys()]).toEqual(['metrics']);
    expect([...d.configRecords.keys()]).toEqual(['config']);
  });

  it('refuses bad names and non-records, and clones deeply', () => {
    const d = new RecordDict();
    expectInvalid(() => d.set('', new MetricRecord()), /Record name/);
    expectInvalid(() => d.set('x', { loss: 1 } as never), /ArrayRecord, MetricRecord or ConfigRecord/);
    d.set('a', ArrayRecord.fromArrays({ w: new Float32Array(1) }));
    const c = d.clone();
    d.getArrayRecord('a')!.get('w', 'float32')!.data[0] = 5;
    expect(c.getArrayRecord('a')!.get('w', 'float32')!.data[0]).toBe(0);
  });
});
