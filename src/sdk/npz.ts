/**
 * An ArrayRecord as a NumPy `.npz` file: what `np.savez` writes and `np.load` reads, so a model a
 * ServerApp saves (`context.artefacts.save('final_model.npz', arrays)`) opens in NumPy, PyTorch
 * or Flower tooling as it is. One `NAME.npy` entry per array (format 1.0, C order), stored
 * uncompressed in a ZIP archive (model weights do not compress). Runtime internal.
 *
 * The archive is returned as its parts: small headers, and each array's bytes as a view (never
 * copied), so a large model costs no second copy in memory.
 */
import { PollenError } from '../errors.js';
import type { ArrayRecord, DType } from './records.js';

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const ORDER = LITTLE_ENDIAN_HOST ? '<' : '>';
const DESCR: Record<DType, string> = {
  float16: `${ORDER}f2`,
  float32: `${ORDER}f4`,
  float64: `${ORDER}f8`,
  int8: '|i1',
  int16: `${ORDER}i2`,
  int32: `${ORDER}i4`,
  int64: `${ORDER}i8`,
  uint8: '|u1',
  uint16: `${ORDER}u2`,
  uint32: `${ORDER}u4`,
  uint64: `${ORDER}u8`,
  bool: '|b1',
};
/** Without ZIP64 a classic archive holds at most this many bytes and entries. */
const ZIP_MAX_BYTES = 0xffffffff;
const ZIP_MAX_ENTRIES = 0xffff;
/** 1980-01-01 00:00 in DOS time: fixed, so one record always encodes to the same bytes. */
const DOS_DATE = (1 << 5) | 1;
/** Names are UTF-8 (general purpose flag bit 11). */
const UTF8_FLAG = 0x0800;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ZIP's) of `parts` as one byte string. */
function crc32(parts: readonly Uint8Array[]): number {
  let c = 0xffffffff;
  for (const p of parts) for (let i = 0; i < p.length; i++) c = CRC_TABLE[(c ^ p[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The `.npy` header of an array: magic, version 1.0, and the padded Python dict literal. */
function npyHeader(dtype: DType, shape: readonly number[]): Uint8Array {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${DESCR[dtype]}', 'fortran_order': False, 'shape': ${dims}, }`;
  // Magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64.
  const length = Math.ceil((10 + dict.length + 1) / 64) * 64 - 10;
  const out = new Uint8Array(10 + length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93NUMPY 1.0
  new DataView(out.buffer).setUint16(8, length, true);
  out.set(new TextEncoder().encode(dict.padEnd(length - 1, ' ')), 10);
  out[10 + length - 1] = 0x0a;
  return out;
}

interface Entry {
  name: Uint8Array;
  parts: Uint8Array[];
  size: number;
  crc: number;
  offset: number;
}

/** A local file header (`central` false) or a central directory header of a stored entry. */
function zipHeader(e: Entry, central: boolean): Uint8Array {
  const fixed = central ? 46 : 30;
  const out = new Uint8Array(fixed + e.name.length);
  const v = new DataView(out.buffer);
  let p = 0;
  const u16 = (n: number) => {
    v.setUint16(p, n, true);
    p += 2;
  };
  const u32 = (n: number) => {
    v.setUint32(p, n, true);
    p += 4;
  };
  u32(central ? 0x02014b50 : 0x04034b50);
  if (central) u16(20); // made by: version 2.0
  u16(20); // needed to extract: version 2.0
  u16(UTF8_FLAG);
  u16(0); // stored
  u16(0); // time
  u16(DOS_DATE);
  u32(e.crc);
  u32(e.size); // compressed
  u32(e.size);
  u16(e.name.length);
  u16(0); // extra field
  if (central) {
    u16(0); // comment
    u16(0); // disk
    u16(0); // internal attributes
    u32(0); // external attributes
    u32(e.offset);
  }
  out.set(e.name, p);
  return out;
}

/**
 * The parts of the `.npz` archive of `record` (concatenated, they are the file). Throws
 * RECORD_INVALID past what a ZIP archive without ZIP64 holds (4 GiB, 65,535 arrays).
 *
 * @example
 * ```ts
 * const bytes = Buffer.concat(encodeNpz(ArrayRecord.fromArrays({ w: new Float32Array([1, 2]) })));
 * // python: np.load('model.npz')['w'] → array([1., 2.], dtype=float32)
 * ```
 */
export function encodeNpz(record: ArrayRecord): Uint8Array[] {
  if (record.size > ZIP_MAX_ENTRIES)
    throw new PollenError('RECORD_INVALID', `An .npz holds at most ${ZIP_MAX_ENTRIES} arrays`);
  const enc = new TextEncoder();
  const entries: Entry[] = [];
  let offset = 0;
  for (const [name, a] of record) {
    const data = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
    const parts = [npyHeader(a.dtype, a.shape), data];
    const e: Entry = { name: enc.encode(`${name}.npy`), parts, size: 0, crc: crc32(parts), offset };
    e.size = parts[0]!.byteLength + data.byteLength;
    entries.push(e);
    offset += 30 + e.name.length + e.size;
  }
  const central = entries.map((e) => zipHeader(e, true));
  const centralSize = central.reduce((n, h) => n + h.byteLength, 0);
  if (offset + centralSize + 22 > ZIP_MAX_BYTES)
    throw new PollenError(
      'RECORD_INVALID',
      'The arrays are too large for an .npz (4 GiB at most): save them in parts',
    );
  const end = new Uint8Array(22);
  const v = new DataView(end.buffer);
  v.setUint32(0, 0x06054b50, true);
  v.setUint16(8, entries.length, true);
  v.setUint16(10, entries.length, true);
  v.setUint32(12, centralSize, true);
  v.setUint32(16, offset, true);
  return [...entries.flatMap((e) => [zipHeader(e, false), ...e.parts]), ...central, end];
}
