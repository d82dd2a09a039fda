/**
 * Records: the data a Message carries, modelled on Flower's message API (flwr 1.2x).
 *
 * - ArrayRecord: named typed arrays (model parameters, updates) with dtype and shape.
 * - MetricRecord: named numbers or lists of numbers (loss, accuracy, number of examples).
 * - ConfigRecord: named configuration values (learning rate, local epochs, flags, bytes).
 * - RecordDict: named records of the three kinds, the content of a Message.
 *
 * Every setter validates its input and throws a PollenError with code RECORD_INVALID, so a bad
 * record is refused where it is made, not on the far side of the network.
 *
 * The canonical binary form of an ArrayRecord is in array-encoding.ts.
 */
import { PollenError } from '../errors.js';

export type DType =
  | 'float16'
  | 'float32'
  | 'float64'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool';

/**
 * The typed array that holds each dtype. JavaScript has no float16 or bool arrays: float16 is
 * held as its raw IEEE 754 half-precision bits in a Uint16Array (convert with `toFloat16` and
 * `fromFloat16`), bool as one byte per element, 0 or 1, in a Uint8Array.
 */
export interface DTypeArrays {
  float16: Uint16Array;
  float32: Float32Array;
  float64: Float64Array;
  int8: Int8Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  uint8: Uint8Array;
  uint16: Uint16Array;
  uint32: Uint32Array;
  uint64: BigUint64Array;
  bool: Uint8Array;
}
export type TypedArray = DTypeArrays[DType];

/** One named array. `data` is row-major (C order); its length is the product of `shape`. */
export interface ArrayEntry<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: DTypeArrays[D];
}

export interface DTypeInfo {
  code: number;
  bytes: number;
  ctor: new (buffer: ArrayBufferLike, byteOffset: number, length: number) => TypedArray;
  is: (v: unknown) => boolean;
}

const info = (code: number, ctor: DTypeInfo['ctor'] & { BYTES_PER_ELEMENT: number }): DTypeInfo => ({
  code,
  bytes: ctor.BYTES_PER_ELEMENT,
  ctor,
  is: (v) => v instanceof ctor,
});

/**
 * Per dtype: its code in the binary form (array-encoding.ts; codes 1-5 are the original ones,
 * later dtypes are appended and no code is ever reused), bytes per element, typed-array class.
 * Internal.
 */
export const DTYPES: Record<DType, DTypeInfo> = {
  float16: info(6, Uint16Array),
  float32: info(1, Float32Array),
  float64: info(2, Float64Array),
  int8: info(7, Int8Array),
  int16: info(8, Int16Array),
  int32: info(3, Int32Array),
  int64: info(4, BigInt64Array),
  uint8: info(5, Uint8Array),
  uint16: info(9, Uint16Array),
  uint32: info(10, Uint32Array),
  uint64: info(11, BigUint64Array),
  bool: info(12, Uint8Array),
};
export const DTYPE_BY_CODE = new Map<number, DType>(
  (Object.keys(DTYPES) as DType[]).map((d) => [DTYPES[d].code, d]),
);

/** True for a dtype name (own key of DTYPES, never an inherited one such as "constructor"). */
export function isDType(name: unknown): name is DType {
  return typeof name === 'string' && Object.hasOwn(DTYPES, name);
}

export const DTYPE_NAMES: readonly DType[] = Object.freeze(Object.keys(DTYPES) as DType[]);
/** Longest record or entry name, in characters. */
export const MAX_NAME_LENGTH = 256;
/** Most dimensions an array may have. */
export const MAX_NDIM = 32;

function invalid(message: string): PollenError {
  return new PollenError('RECORD_INVALID', message);
}

/** Names are 1-256 characters with no control characters. */
export function validateName(kind: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH)
    throw invalid(`${kind} name must be a string of 1-${MAX_NAME_LENGTH} characters`);
  if (/[\u0000-\u001f\u007f]/.test(name))
    throw invalid(`${kind} name ${JSON.stringify(name)} contains a control character`);
}

/** The dtypes a typed array implies: a Uint16Array is uint16 and a Uint8Array uint8 unless told. */
const IMPLIED: readonly DType[] = DTYPE_NAMES.filter((d) => d !== 'float16' && d !== 'bool');

/** The dtype a typed array implies, or undefined for an unsupported kind (Uint8ClampedArray…). */
export function dtypeOf(data: unknown): DType | undefined {
  for (const d of IMPLIED) if (DTYPES[d].is(data)) return d;
  return undefined;
}

/** Index of the first byte of a bool array that is neither 0 nor 1, or -1. */
function firstNonBool(data: Uint8Array): number {
  for (let i = 0; i < data.length; i++) if (data[i]! > 1) return i;
  return -1;
}

function checkEntry(name: string, entry: unknown): ArrayEntry {
  validateName('Array', name);
  if (typeof entry !== 'object' || entry === null) throw invalid(`Array "${name}" must be an object`);
  const { dtype, shape, data } = entry as Record<string, unknown>;
  if (!isDType(dtype)) throw invalid(`Array "${name}": dtype must be one of ${DTYPE_NAMES.join(', ')}`);
  if (!DTYPES[dtype].is(data))
    throw invalid(`Array "${name}": data must be a ${DTYPES[dtype].ctor.name} for dtype ${dtype}`);
  if (!Array.isArray(shape) || shape.length > MAX_NDIM)
    throw invalid(`Array "${name}": shape must be an array of at most ${MAX_NDIM} dimensions`);
  let count = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0)
      throw invalid(`Array "${name}": shape dimensions must be non-negative integers`);
    count *= dim;
  }
  const length = (data as TypedArray).length;
  if (count !== length)
    throw invalid(
      `Array "${name}": shape [${shape.join(', ')}] holds ${count} values but data has ${length}`,
    );
  if (dtype === 'bool') {
    const at = firstNonBool(data as Uint8Array);
    if (at >= 0)
      throw invalid(
        `Array "${name}": bool element ${at} is ${(data as Uint8Array)[at]}; bool bytes must be 0 or 1`,
      );
  }
  return Object.freeze({ dtype, shape: Object.freeze([...shape]), data: data as TypedArray });
}

type EntriesInit<V> = Iterable<readonly [string, V]> | Readonly<Record<string, V>>;

function entriesOf<V>(init: EntriesInit<V> | undefined): Iterable<readonly [string, V]> {
  if (init === undefined) return [];
  if (Symbol.iterator in (init as object)) return init as Iterable<readonly [string, V]>;
  return Object.entries(init as Record<string, V>);
}

/**
 * An ordered map from names to typed arrays (Flower's `ArrayRecord`): model parameters or
 * updates, each with its dtype and shape. Arrays are held by reference, not copied (models can be
 * large); `clone()` makes a deep copy. Order is insertion order and travels with the record.
 *
 * @example
 * ```ts
 * const arrays = ArrayRecord.fromArrays({ 'dense.kernel': { data: new Float32Array(784 * 10), shape: [784, 10] } });
 * arrays.set('dense.bias', { dtype: 'float32', shape: [10], data: new Float32Array(10) });
 * const kernel = arrays.get('dense.kernel', 'float32')?.data; // a Float32Array
 * ```
 */
export class ArrayRecord {
  readonly kind = 'array' as const;
  readonly #entries = new Map<string, ArrayEntry>();

  constructor(init?: EntriesInit<ArrayEntry>) {
    for (const [name, entry] of entriesOf(init)) this.set(name, entry);
  }

  /**
   * Build from plain typed arrays: the dtype is the one the array implies (a Uint16Array is
   * uint16, a Uint8Array uint8) unless given as `{ data, dtype }`, as float16 and bool arrays
   * must be; the shape defaults to 1-D.
   */
  static fromArrays(
    arrays: Readonly<
      Record<string, TypedArray | { data: TypedArray; shape?: readonly number[]; dtype?: DType }>
    >,
  ): ArrayRecord {
    const record = new ArrayRecord();
    for (const [name, value] of Object.entries(arrays)) {
      const plain = dtypeOf(value) !== undefined;
      const data = plain ? (value as TypedArray) : (value as { data: TypedArray }).data;
      const dtype = (plain ? undefined : (value as { dtype?: DType }).dtype) ?? dtypeOf(data);
      if (dtype === undefined)
        throw invalid(
          `Array "${name}": use a Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, BigInt64Array, Uint8Array, Uint16Array, Uint32Array or BigUint64Array`,
        );
      const shape = (value as { shape?: readonly number[] }).shape ?? [data.length];
      record.set(name, { dtype, shape, data });
    }
    return record;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Total bytes of array data (not counting names and shapes). */
  get byteLength(): number {
    let n = 0;
    for (const e of this.#entries.values()) n += e.data.byteLength;
    return n;
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** The array, or undefined. With `dtype`, a different dtype throws RECORD_INVALID. */
  get(name: string): ArrayEntry | undefined;
  get<D extends DType>(name: string, dtype: D): ArrayEntry<D> | undefined;
  get(name: string, dtype?: DType): ArrayEntry | undefined {
    const e = this.#entries.get(name);
    if (e !== undefined && dtype !== undefined && e.dtype !== dtype)
      throw invalid(`Array "${name}" is ${e.dtype}, not ${dtype}`);
    return e;
  }

  set(name: string, entry: ArrayEntry): this {
    this.#entries.set(name, checkEntry(name, entry));
    return this;
  }

  delete(name: string): boolean {
    return this.#entries.delete(name);
  }

  keys(): IterableIterator<string> {
    return this.#entries.keys();
  }

  entries(): IterableIterator<[string, ArrayEntry]> {
    return this.#entries.entries();
  }

  [Symbol.iterator](): IterableIterator<[string, ArrayEntry]> {
    return this.#entries.entries();
  }

  clone(): ArrayRecord {
    const copy = new ArrayRecord();
    for (const [name, e] of this.#entries) copy.set(name, { ...e, data: e.data.slice() });
    return copy;
  }
}

export type MetricValue = number | readonly number[];

export type ConfigScalar = number | string | boolean | Uint8Array;
export type ConfigValue =
  | ConfigScalar
  | readonly number[]
  | readonly string[]
  | readonly boolean[]
  | readonly Uint8Array[];

/** Shared behaviour of the two key → value records. Values are copied in, so later edits of the caller's arrays do not leak in. */
abstract class ValueRecord<V> {
  readonly #values = new Map<string, V>();

  constructor(init?: EntriesInit<V>) {
    for (const [name, value] of entriesOf(init)) this.set(name, value);
  }

  /** 'Metric' or 'Config', for error messages (a getter: it is read during construction). */
  protected abstract get label(): string;
  protected abstract check(name: string, value: unknown): V;

  get size(): number {
    return this.#values.size;
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  get(name: string): V | undefined {
    return this.#values.get(name);
  }

  set(name: string, value: V): this {
    validateName(this.label, name);
    this.#values.set(name, this.check(name, value));
    return this;
  }

  delete(name: string): boolean {
    return this.#values.delete(name);
  }

  keys(): IterableIterator<string> {
    return this.#values.keys();
  }

  entries(): IterableIterator<[string, V]> {
    return this.#values.entries();
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.#values.entries();
  }

  /** A plain object (handy for logging and JSON). */
  toObject(): Record<string, V> {
    return Object.fromEntries(this.#values);
  }
}

function finite(kind: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw invalid(`${kind} "${name}" must be a finite number`);
  return v;
}

/**
 * Named metrics (Flower's `MetricRecord`): finite numbers or lists of finite numbers (NaN and
 * Infinity are refused). Strategies weigh replies by their `num-examples`.
 *
 * @example
 * ```ts
 * const metrics = new MetricRecord({ 'num-examples': 600, 'train-loss': 0.31, 'per-class': [0.9, 0.8] });
 * ```
 */
export class MetricRecord extends ValueRecord<MetricValue> {
  readonly kind = 'metric' as const;
  protected get label(): string {
    return 'Metric';
  }

  protected check(name: string, value: unknown): MetricValue {
    if (Array.isArray(value)) return Object.freeze(value.map((v) => finite('Metric', name, v)));
    return finite('Metric', name, value);
  }

  clone(): MetricRecord {
    return new MetricRecord(this);
  }
}

function configScalar(name: string, v: unknown): ConfigScalar {
  if (typeof v === 'number') return finite('Config', name, v);
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Uint8Array) return v.slice();
  throw invalid(`Config "${name}" must be a number, string, boolean, Uint8Array or a list of one of them`);
}

function scalarKind(v: ConfigScalar): string {
  return v instanceof Uint8Array ? 'bytes' : typeof v;
}

/**
 * Named configuration values (Flower's `ConfigRecord`): number, string, boolean, bytes, or a
 * list of values of one kind.
 *
 * @example
 * ```ts
 * const config = new ConfigRecord({ 'local-epochs': 1, 'learning-rate': 0.003, optimizer: 'adam' });
 * const epochs = config.get('local-epochs');
 * ```
 */
export class ConfigRecord extends ValueRecord<ConfigValue> {
  readonly kind = 'config' as const;
  protected get label(): string {
    return 'Config';
  }

  protected check(name: string, value: unknown): ConfigValue {
    if (!Array.isArray(value)) return configScalar(name, value);
    const items = value.map((v) => configScalar(name, v));
    const first = items[0];
    if (first !== undefined && items.some((v) => scalarKind(v) !== scalarKind(first)))
      throw invalid(`Config "${name}": a list must hold values of one kind`);
    return Object.freeze(items) as ConfigValue;
  }

  clone(): ConfigRecord {
    return new ConfigRecord(this);
  }
}

export type AnyRecord = ArrayRecord | MetricRecord | ConfigRecord;
type RecordKind = AnyRecord['kind'];
type RecordOfKind<K extends RecordKind> = Extract<AnyRecord, { kind: K }>;

/**
 * Named records of the three kinds: the content of a Message (Flower's `RecordDict`).
 *
 * @example
 * ```ts
 * const content = new RecordDict({ arrays, metrics: new MetricRecord({ 'num-examples': 600 }) });
 * const weights = content.getArrayRecord('arrays'); // RECORD_INVALID if "arrays" is another kind
 * ```
 */
export class RecordDict {
  readonly #records = new Map<string, AnyRecord>();

  constructor(init?: EntriesInit<AnyRecord>) {
    for (const [name, record] of entriesOf(init)) this.set(name, record);
  }

  get size(): number {
    return this.#records.size;
  }

  has(name: string): boolean {
    return this.#records.has(name);
  }

  get(name: string): AnyRecord | undefined {
    return this.#records.get(name);
  }

  set(name: string, record: AnyRecord): this {
    validateName('Record', name);
    if (!(record instanceof ArrayRecord || record instanceof MetricRecord || record instanceof ConfigRecord))
      throw invalid(`Record "${name}" must be an ArrayRecord, MetricRecord or ConfigRecord`);
    this.#records.set(name, record);
    return this;
  }

  delete(name: string): boolean {
    return this.#records.delete(name);
  }

  keys(): IterableIterator<string> {
    return this.#records.keys();
  }

  entries(): IterableIterator<[string, AnyRecord]> {
    return this.#records.entries();
  }

  [Symbol.iterator](): IterableIterator<[string, AnyRecord]> {
    return this.#records.entries();
  }

  #typed<K extends RecordKind>(kind: K, name: string): RecordOfKind<K> | undefined {
    const r = this.#records.get(name);
    if (r !== undefined && r.kind !== kind)
      throw invalid(`Record "${name}" is a ${r.kind} record, not ${kind}`);
    return r as RecordOfKind<K> | undefined;
  }

  /** The ArrayRecord called `name`, undefined if absent; RECORD_INVALID if it is another kind. */
  getArrayRecord(name: string): ArrayRecord | undefined {
    return this.#typed('array', name);
  }

  getMetricRecord(name: string): MetricRecord | undefined {
    return this.#typed('metric', name);
  }

  getConfigRecord(name: string): ConfigRecord | undefined {
    return this.#typed('config', name);
  }

  #ofKind<K extends RecordKind>(kind: K): Map<string, RecordOfKind<K>> {
    const out = new Map<string, RecordOfKind<K>>();
    for (const [n, r] of this.#records) if (r.kind === kind) out.set(n, r as RecordOfKind<K>);
    return out;
  }

  /** All ArrayRecords, by name (a new map; Flower's `array_records`). */
  get arrayRecords(): Map<string, ArrayRecord> {
    return this.#ofKind('array');
  }

  get metricRecords(): Map<string, MetricRecord> {
    return this.#ofKind('metric');
  }

  get configRecords(): Map<string, ConfigRecord> {
    return this.#ofKind('config');
  }

  /** A deep copy: what the other side of a network would see. */
  clone(): RecordDict {
    const copy = new RecordDict();
    for (const [n, r] of this.#records) copy.set(n, r.clone());
    return copy;
  }
}
