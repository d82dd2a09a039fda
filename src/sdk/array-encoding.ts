/**
 * The canonical binary form of an ArrayRecord (one record ↔ one byte string), suitable for
 * content addressing. Runtime internal: apps never see bytes.
 *
 *   offset 0   magic "PLAR", u8 version (1), 3 zero bytes
 *   offset 8   u32 number of arrays, u32 dataStart (offset of the data section, a multiple of 8)
 *   offset 16  per array, in record order: u16 name length, UTF-8 name, u8 dtype code (DTYPES in
 *              records.ts: new dtypes get new codes, none is reused), u8 ndim,
 *              ndim × u64 dims, u64 offset (from dataStart), u64 byte length
 *   then       zero padding to dataStart, then each array's raw little-endian bytes at its
 *              8-byte-aligned offset, zero padding between arrays and to the end (a multiple of 8)
 *
 * All integers are little-endian. The decoder accepts only the canonical form: every offset,
 * length, padding byte and the total size must be exactly what the encoder would write.
 */
import { PollenError } from '../errors.js';
import { ArrayRecord, DTYPE_BY_CODE, DTYPES, MAX_NDIM, type TypedArray } from './records.js';

function invalid(message: string): PollenError {
  return new PollenError('RECORD_INVALID', message);
}

const MAGIC = [0x50, 0x4c, 0x41, 0x52]; // "PLAR"
const VERSION = 1;
const FIXED_HEADER = 16;
const MIN_ENTRY_HEADER = 2 + 1 + 1 + 8 + 8;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const align8 = (n: number): number => Math.ceil(n / 8) * 8;

function swapBytes(bytes: Uint8Array, width: number): void {
  if (width === 1) return;
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

function bytesOf(data: TypedArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Encode an ArrayRecord to its canonical bytes (see the file header for the layout). */
export function encodeArrayRecord(record: ArrayRecord): Uint8Array {
  const enc = new TextEncoder();
  const items = [...record].map(([name, e]) => ({ name: enc.encode(name), e }));
  let headerLength = FIXED_HEADER;
  for (const { name, e } of items) headerLength += 2 + name.length + 2 + 8 * e.shape.length + 16;
  const dataStart = align8(headerLength);
  let offset = 0;
  const offsets = items.map(({ e }) => {
    const at = offset;
    offset = align8(at + e.data.byteLength);
    return at;
  });
  if (dataStart > 0xffffffff) throw invalid('ArrayRecord header too large to encode');
  const out = new Uint8Array(dataStart + offset);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint8(4, VERSION);
  view.setUint32(8, items.length, true);
  view.setUint32(12, dataStart, true);
  let p = FIXED_HEADER;
  items.forEach(({ name, e }, i) => {
    view.setUint16(p, name.length, true);
    out.set(name, p + 2);
    p += 2 + name.length;
    view.setUint8(p, DTYPES[e.dtype].code);
    view.setUint8(p + 1, e.shape.length);
    p += 2;
    for (const dim of e.shape) {
      view.setBigUint64(p, BigInt(dim), true);
      p += 8;
    }
    view.setBigUint64(p, BigInt(offsets[i]!), true);
    view.setBigUint64(p + 8, BigInt(e.data.byteLength), true);
    p += 16;
    const target = out.subarray(dataStart + offsets[i]!, dataStart + offsets[i]! + e.data.byteLength);
    target.set(bytesOf(e.data));
    if (!LITTLE_ENDIAN_HOST) swapBytes(target, DTYPES[e.dtype].bytes);
  });
  return out;
}

export interface DecodeOptions {
  /**
   * Copy array data out of `bytes` (default true). With false, arrays that are suitably aligned
   * in memory are views into `bytes` (no copy): do not modify `bytes` afterwards.
   */
  copy?: boolean;
}

/** Decode canonical bytes made by encodeArrayRecord(); anything else throws RECORD_INVALID. */
export function decodeArrayRecord(bytes: Uint8Array, options: DecodeOptions = {}): ArrayRecord {
  const copy = options.copy ?? true;
  if (!(bytes instanceof Uint8Array)) throw invalid('ArrayRecord bytes must be a Uint8Array');
  const fail = (why: string): never => {
    throw invalid(`Malformed ArrayRecord encoding: ${why}`);
  };
  if (bytes.length < FIXED_HEADER) fail('too short');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (MAGIC.some((b, i) => bytes[i] !== b)) fail('bad magic');
  if (bytes[4] !== VERSION) fail(`unsupported version ${bytes[4]}`);
  if (bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) fail('reserved bytes are not zero');
  const count = view.getUint32(8, true);
  const dataStart = view.getUint32(12, true);
  if (count * MIN_ENTRY_HEADER > bytes.length - FIXED_HEADER) fail('array count exceeds the input');
  if (dataStart % 8 !== 0 || dataStart > bytes.length) fail('bad data offset');
  const dec = new TextDecoder('utf-8', { fatal: true });
  const u64 = (at: number): number => {
    const v = view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('integer out of range');
    return Number(v);
  };
  const need = (p: number, n: number): void => {
    if (p + n > dataStart) fail('header overruns the data section');
  };
  const record = new ArrayRecord();
  let p = FIXED_HEADER;
  let expectedOffset = 0;
  for (let i = 0; i < count; i++) {
    need(p, 2);
    const nameLength = view.getUint16(p, true);
    need(p + 2, nameLength + 2);
    let name = '';
    try {
      name = dec.decode(bytes.subarray(p + 2, p + 2 + nameLength));
    } catch {
      fail('name is not UTF-8');
    }
    p += 2 + nameLength;
    const dtype = DTYPE_BY_CODE.get(view.getUint8(p)) ?? fail(`unknown dtype code ${view.getUint8(p)}`);
    const ndim = view.getUint8(p + 1);
    if (ndim > MAX_NDIM) fail(`too many dimensions (${ndim})`);
    p += 2;
    need(p, 8 * ndim + 16);
    const shape: number[] = [];
    let elements = 1;
    for (let d = 0; d < ndim; d++) {
      const dim = u64(p + 8 * d);
      shape.push(dim);
      elements *= dim;
    }
    p += 8 * ndim;
    const offset = u64(p);
    const byteLength = u64(p + 8);
    p += 16;
    const info = DTYPES[dtype];
    if (!Number.isSafeInteger(elements * info.bytes) || elements * info.bytes !== byteLength)
      fail(`array "${name}" length does not match its shape`);
    if (offset !== expectedOffset) fail(`array "${name}" is not at its canonical offset`);
    const start = dataStart + offset;
    if (start + byteLength > bytes.length) fail(`array "${name}" overruns the input`);
    if (record.has(name)) fail(`duplicate array name "${name}"`);
    expectedOffset = align8(offset + byteLength);
    for (let z = start + byteLength; z < Math.min(dataStart + expectedOffset, bytes.length); z++)
      if (bytes[z] !== 0) fail('padding is not zero');
    let data: TypedArray;
    const absolute = bytes.byteOffset + start;
    if (!copy && LITTLE_ENDIAN_HOST && absolute % info.bytes === 0) {
      data = new info.ctor(bytes.buffer, absolute, elements);
    } else {
      const raw = bytes.slice(start, start + byteLength);
      if (!LITTLE_ENDIAN_HOST) swapBytes(raw, info.bytes);
      data = new info.ctor(raw.buffer, 0, elements);
    }
    record.set(name, { dtype, shape, data }); // validates the name
  }
  if (align8(p) !== dataStart) fail('header length does not match the data offset');
  for (let z = p; z < dataStart; z++) if (bytes[z] !== 0) fail('header padding is not zero');
  if (bytes.length !== dataStart + expectedOffset) fail('trailing or missing bytes');
  return record;
}
