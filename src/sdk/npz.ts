/**
 * An ArrayRecord as a NumPy `.npz` file: what `np.savez` writes and `np.load` reads, so a model a
 * ServerApp saves (`context.artefacts.save('final_model.npz', arrays)`) opens in NumPy, PyTorch
 * or Flower tooling as it is. One `NAME.npy` entry per array (format 1.0, C order), stored
 * uncompressed in a ZIP archive (model weights do not compress). Runtime internal.
 * `decodeNpz` reads what `np.savez` / `np.savez_compressed` write (a built-in ServerApp's
 * initial model).
 *
 * The archive is returned as its parts: small headers, and each array's bytes as a view (never
 * copied), so a large model costs no second copy in memory.
 */
import { inflateRawSync } from 'node:zlib';
import { PollenError } from '../errors.js';
import { ArrayRecord, DTYPES, type DType } from './records.js';

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

// ---- Reading ------------------------------------------------------------------------------

const ZIP_EOCD = 0x06054b50;
const ZIP64_EOCD = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP_CENTRAL = 0x02014b50;
const ZIP_LOCAL = 0x04034b50;
const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

function unreadable(what: string, reason: string): PollenError {
  return new PollenError('APP_INVALID', `${what} is not a NumPy .npz file NumPy writes: ${reason}`, {
    hint: 'Save the arrays with numpy.savez (or savez_compressed): one C-order array per name, of a dtype Pollen holds.',
  });
}

interface CentralEntry {
  name: string;
  method: number;
  compressedSize: number;
  localOffset: number;
}

/** The central directory of a ZIP archive, ZIP64 sizes and offsets included (np.savez writes them). */
function centralDirectory(buf: Uint8Array, what: string): CentralEntry[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let end = -1;
  for (let p = buf.length - 22; p >= Math.max(0, buf.length - 22 - 0xffff); p--)
    if (v.getUint32(p, true) === ZIP_EOCD) {
      end = p;
      break;
    }
  if (end < 0) throw unreadable(what, 'no ZIP end-of-directory record');
  let count = v.getUint16(end + 10, true);
  let offset = v.getUint32(end + 16, true);
  if (
    (count === 0xffff || offset === 0xffffffff) &&
    end >= 20 &&
    v.getUint32(end - 20, true) === ZIP64_LOCATOR
  ) {
    const z = Number(v.getBigUint64(end - 12, true));
    if (z + 56 > buf.length || v.getUint32(z, true) !== ZIP64_EOCD)
      throw unreadable(what, 'a broken ZIP64 record');
    count = Number(v.getBigUint64(z + 32, true));
    offset = Number(v.getBigUint64(z + 48, true));
  }
  const entries: CentralEntry[] = [];
  const dec = new TextDecoder('utf-8', { fatal: true });
  for (let p = offset, k = 0; k < count; k++) {
    if (p + 46 > buf.length || v.getUint32(p, true) !== ZIP_CENTRAL)
      throw unreadable(what, 'a broken ZIP directory');
    const nameLength = v.getUint16(p + 28, true);
    const extraLength = v.getUint16(p + 30, true);
    const commentLength = v.getUint16(p + 32, true);
    const e: CentralEntry = {
      name: dec.decode(buf.subarray(p + 46, p + 46 + nameLength)),
      method: v.getUint16(p + 10, true),
      compressedSize: v.getUint32(p + 20, true),
      localOffset: v.getUint32(p + 42, true),
    };
    // ZIP64 extra field (id 1): the 64-bit values of the fields saturated above, in this order.
    const size32 = v.getUint32(p + 24, true);
    for (let x = p + 46 + nameLength; x + 4 <= p + 46 + nameLength + extraLength; ) {
      const id = v.getUint16(x, true);
      const len = v.getUint16(x + 2, true);
      if (id === 1) {
        let q = x + 4;
        const next = () => {
          const n = Number(v.getBigUint64(q, true));
          q += 8;
          return n;
        };
        if (size32 === 0xffffffff) next();
        if (e.compressedSize === 0xffffffff) e.compressedSize = next();
        if (e.localOffset === 0xffffffff) e.localOffset = next();
      }
      x += 4 + len;
    }
    entries.push(e);
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The bytes of one entry, inflated when it is compressed. */
function entryBytes(buf: Uint8Array, e: CentralEntry, what: string): Uint8Array {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const p = e.localOffset;
  if (p + 30 > buf.length || v.getUint32(p, true) !== ZIP_LOCAL)
    throw unreadable(what, `a broken entry ${e.name}`);
  const start = p + 30 + v.getUint16(p + 26, true) + v.getUint16(p + 28, true);
  if (start + e.compressedSize > buf.length) throw unreadable(what, `entry ${e.name} is cut short`);
  const raw = buf.subarray(start, start + e.compressedSize);
  if (e.method === 0) return raw;
  if (e.method === 8) return inflateRawSync(raw);
  throw unreadable(what, `entry ${e.name} uses ZIP method ${e.method}`);
}

const DTYPE_BY_DESCR = new Map<string, DType>(
  (Object.entries(DESCR) as [DType, string][]).flatMap(([dtype, descr]) => [
    [descr, dtype],
    [`=${descr.slice(1)}`, dtype],
  ]),
);

/** One `.npy` array: header (format 1.0–3.0) and the C-order data, copied into an aligned array. */
function parseNpy(bytes: Uint8Array, name: string, what: string) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 10 || NPY_MAGIC.some((b, i) => bytes[i] !== b))
    throw unreadable(what, `${name} is not an .npy array`);
  const major = bytes[6];
  const headerLength = major === 1 ? v.getUint16(8, true) : v.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined)
    throw unreadable(what, `${name} has an unreadable .npy header`);
  const dtype = DTYPE_BY_DESCR.get(descr);
  if (dtype === undefined)
    throw unreadable(
      what,
      `${name} has dtype ${descr}; Pollen holds ${Object.keys(DESCR).join(', ')} (little-endian)`,
    );
  if (fortran === 'True')
    throw unreadable(what, `${name} is in Fortran order (save numpy.ascontiguousarray(a))`);
  const shape = shapeText
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '')
    .map(Number);
  const count = shape.reduce((n, d) => n * d, 1);
  const { bytes: size, ctor } = DTYPES[dtype];
  const start = headerStart + headerLength;
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0) || bytes.length - start !== count * size)
    throw unreadable(
      what,
      `${name} holds ${bytes.length - start} bytes, its shape [${shape.join(', ')}] needs ${count * size}`,
    );
  // A copy: the data may sit at any offset of the archive, typed arrays need aligned views.
  const data = new ctor(new ArrayBuffer(count * size), 0, count);
  new Uint8Array(data.buffer).set(bytes.subarray(start));
  return { dtype, shape, data };
}

/**
 * The arrays of an `.npz` archive, in the archive's order, named without `.npy`. `what` names
 * the file in errors. Throws APP_INVALID on anything that is not such an archive, or holds an
 * array of a dtype Pollen does not hold (big-endian, object, Fortran order).
 *
 * @example
 * ```ts
 * const arrays = decodeNpz(readFileSync('model.npz'), 'model.npz'); // python: np.savez('model.npz', w=w)
 * arrays.get('w')?.dtype; // 'float32'
 * ```
 */
export function decodeNpz(buf: Uint8Array, what = 'The file'): ArrayRecord {
  const record = new ArrayRecord();
  for (const e of centralDirectory(buf, what)) {
    if (!e.name.endsWith('.npy')) throw unreadable(what, `entry ${e.name} is not an .npy array`);
    const name = e.name.slice(0, -4);
    if (record.has(name)) throw unreadable(what, `it holds ${name} twice`);
    record.set(name, parseNpy(entryBytes(buf, e, what), name, what) as never);
  }
  return record;
}
