/**
 * SDK ↔ protobuf. Pure functions: no I/O besides the chunk callbacks the caller passes in.
 *
 * Sending: array data is never copied. Inline bytes and chunks are views into the typed arrays,
 * so serialise and upload before modifying the model.
 *
 * Receiving: everything a hostile peer controls is checked before any allocation (dtype, shape,
 * sizes, chunk ids, totals), each typed array is allocated exactly once and filled in place, and
 * every chunk is hashed against its id. Failures are PollenErrors: MESSAGE_INVALID,
 * RECORD_INVALID, PAYLOAD_TOO_LARGE and CHUNK_ID_INVALID / CHUNK_MISMATCH / CHUNK_MISSING.
 */
import { randomBytes } from 'node:crypto';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { PollenError } from '../errors.js';
import * as pb from '../gen/pollen/v1/records_pb.js';
import { Message, type MessageError, type MessageType, type Metadata } from '../sdk/message.js';
import {
  ArrayRecord,
  ConfigRecord,
  type ConfigValue,
  DTYPES,
  type DType,
  isDType,
  MAX_NDIM,
  MetricRecord,
  RecordDict,
  type TypedArray,
  validateName,
} from '../sdk/records.js';
import { allocKernelFloat32, inKernelMemory } from '../strategies/kernel-memory.js';
import { CHUNK_SIZE, chunkId, INLINE_MAX, isChunkId } from './chunks.js';

// Run and node config travel in the same records: their conversion is in wire-config.ts.
export { configFromWire, configToWire } from './wire-config.js';

export type WireMessage = pb.Message;

const GiB = 1024 * 1024 * 1024;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function recordInvalid(message: string): PollenError {
  return new PollenError('RECORD_INVALID', message);
}

function messageInvalid(message: string): PollenError {
  return new PollenError('MESSAGE_INVALID', message);
}

function swapBytes(bytes: Uint8Array, width: number): void {
  if (width === 1) return;
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

// ---------------------------------------------------------------------------------------------
// Sending

export interface ToWireOptions {
  /** Arrays of at most this many bytes travel inline (default INLINE_MAX, 64 KiB). */
  inlineMax?: number;
  /** Piece size of chunked arrays, a power of two (default CHUNK_SIZE, 4 MiB). */
  chunkSize?: number;
  /**
   * The chunk id of every piece, in the order of `messagePieces(message, options)`, already
   * computed (e.g. by uploadPieces while the pieces were uploaded): not hashed again. Trusted:
   * a wrong id only makes the receiver refuse the chunk (CHUNK_MISMATCH / CHUNK_MISSING).
   */
  pieceIds?: readonly string[];
}

export interface ToWireResult {
  wire: WireMessage;
  /** Chunk id → bytes, views into the message's typed arrays (no copy). */
  chunks: Map<string, Uint8Array>;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/**
 * Little-endian element bytes: a view on little-endian hosts (all mainstream ones), except for an
 * array in the kernel's memory, which is copied: its pieces may outlive the array (in a chunk
 * store), and a view would not keep its block from being reused.
 */
function elementBytes(data: TypedArray, dtype: DType): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN_HOST) return inKernelMemory(data) ? view.slice() : view;
  const copy = view.slice();
  swapBytes(copy, DTYPES[dtype].bytes);
  return copy;
}

type ConfigEntryValue = MessageInitShape<typeof pb.ConfigEntrySchema>['value'];

function configEntryValue(value: ConfigValue): ConfigEntryValue {
  if (typeof value === 'number') return { case: 'number', value };
  if (typeof value === 'string') return { case: 'text', value };
  if (typeof value === 'boolean') return { case: 'flag', value };
  if (value instanceof Uint8Array) return { case: 'binary', value };
  const first = value[0];
  // An empty list has no kind; it travels as an empty number list and comes back as [].
  if (first === undefined || typeof first === 'number')
    return { case: 'numbers', value: { values: value as number[] } };
  if (typeof first === 'string') return { case: 'texts', value: { values: value as string[] } };
  if (typeof first === 'boolean') return { case: 'flags', value: { values: value as boolean[] } };
  return { case: 'binaries', value: { values: value as Uint8Array[] } };
}

function sizesOf(options: ToWireOptions): { inlineMax: number; chunkSize: number } {
  const inlineMax = options.inlineMax ?? INLINE_MAX;
  const chunkSize = options.chunkSize ?? CHUNK_SIZE;
  if (!Number.isSafeInteger(inlineMax) || inlineMax < 0)
    throw new PollenError('INVALID_ARGUMENT', 'inlineMax must be a non-negative integer');
  if (!isPowerOfTwo(chunkSize)) throw new PollenError('INVALID_ARGUMENT', 'chunkSize must be a power of two');
  return { inlineMax, chunkSize };
}

/** The pieces (views, no copy on little-endian hosts) `bytes` is cut into, in order. */
function piecesOf(bytes: Uint8Array, chunkSize: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength; at += chunkSize)
    out.push(bytes.subarray(at, Math.min(at + chunkSize, bytes.byteLength)));
  return out;
}

/**
 * The pieces messageToWire cuts `message`'s large arrays into, in the order it names them (with
 * repeats), without hashing: views into the typed arrays. Hash them (uploadPieces does, while
 * uploading) and pass the ids to messageToWire as `pieceIds`.
 */
export function messagePieces(message: Message, options: ToWireOptions = {}): Uint8Array[] {
  const { inlineMax, chunkSize } = sizesOf(options);
  const out: Uint8Array[] = [];
  if (message.error !== undefined) return out;
  for (const [, record] of message.content ?? new RecordDict()) {
    if (record.kind !== 'array') continue;
    for (const [, e] of record) {
      const bytes = elementBytes(e.data, e.dtype);
      if (bytes.byteLength > inlineMax) for (const piece of piecesOf(bytes, chunkSize)) out.push(piece);
    }
  }
  return out;
}

/** The metadata fields that cross the wire as they are (createdAt changes type: ms ↔ int64). */
function sameMetadata(m: Metadata | pb.Metadata): Omit<Metadata, 'createdAt'> {
  return {
    runId: m.runId,
    messageId: m.messageId,
    srcNodeId: m.srcNodeId,
    dstNodeId: m.dstNodeId,
    replyToMessageId: m.replyToMessageId,
    groupId: m.groupId,
    ttlSeconds: m.ttlSeconds,
    // From the wire: the Message constructor refuses anything but the three types.
    messageType: m.messageType as MessageType,
  };
}

/**
 * The protobuf form of `message` and the chunks its large arrays were cut into. Chunk ids are
 * SHA-256 hashes, computed here (about 1.5 GB/s) unless given as `pieceIds`; identical pieces
 * appear once in `chunks`.
 */
export function messageToWire(message: Message, options: ToWireOptions = {}): ToWireResult {
  const { inlineMax, chunkSize } = sizesOf(options);
  const given = options.pieceIds;
  let used = 0;
  const idOf = (piece: Uint8Array): string => {
    if (given === undefined) return chunkId(piece);
    const id = given[used++];
    if (!isChunkId(id))
      throw new PollenError(
        'INVALID_ARGUMENT',
        id === undefined
          ? 'pieceIds has fewer ids than the message has pieces'
          : 'pieceIds holds an invalid id',
      );
    return id;
  };
  const chunks = new Map<string, Uint8Array>();
  const m = message.metadata;
  const init: MessageInitShape<typeof pb.MessageSchema> = {
    metadata: { ...sameMetadata(m), createdAt: BigInt(Math.trunc(m.createdAt)) },
  };
  if (message.error !== undefined) {
    if (given !== undefined && given.length > 0)
      throw new PollenError('INVALID_ARGUMENT', 'pieceIds given for an error message, which has no pieces');
    init.body = { case: 'error', value: { code: message.error.code, reason: message.error.reason } };
    return { wire: create(pb.MessageSchema, init), chunks };
  }
  const records: MessageInitShape<typeof pb.RecordSchema>[] = [];
  for (const [name, record] of message.content ?? new RecordDict()) {
    if (record.kind === 'array') {
      const arrays: MessageInitShape<typeof pb.ArraySchema>[] = [];
      for (const [arrayName, e] of record) {
        const bytes = elementBytes(e.data, e.dtype);
        const array: MessageInitShape<typeof pb.ArraySchema> = {
          name: arrayName,
          dtype: e.dtype,
          shape: e.shape.map((d) => BigInt(d)),
          nbytes: BigInt(bytes.byteLength),
        };
        if (bytes.byteLength <= inlineMax) array.inline = bytes;
        else {
          const ids: string[] = [];
          for (const piece of piecesOf(bytes, chunkSize)) {
            const id = idOf(piece);
            if (!chunks.has(id)) chunks.set(id, piece);
            ids.push(id);
          }
          array.chunkIds = ids;
        }
        arrays.push(array);
      }
      records.push({ name, record: { case: 'arrays', value: { arrays } } });
    } else if (record.kind === 'metric') {
      const entries: MessageInitShape<typeof pb.MetricEntrySchema>[] = [];
      for (const [key, value] of record)
        entries.push({
          key,
          value:
            typeof value === 'number'
              ? { case: 'scalar', value }
              : { case: 'list', value: { values: [...value] } },
        });
      records.push({ name, record: { case: 'metrics', value: { entries } } });
    } else {
      const entries: MessageInitShape<typeof pb.ConfigEntrySchema>[] = [];
      for (const [key, value] of record) entries.push({ key, value: configEntryValue(value) });
      records.push({ name, record: { case: 'configs', value: { entries } } });
    }
  }
  if (given !== undefined && used !== given.length)
    throw new PollenError(
      'INVALID_ARGUMENT',
      `pieceIds has ${given.length} ids; the message has ${used} pieces`,
    );
  init.body = { case: 'content', value: { records } };
  return { wire: create(pb.MessageSchema, init), chunks };
}

/**
 * Node `srcNodeId`'s error reply to a wire instruction, made without decoding the instruction's
 * content (a node that cannot handle it need not fetch its arrays).
 */
export function wireErrorReply(
  instruction: WireMessage,
  error: MessageError,
  o: { srcNodeId: string; now: number },
): WireMessage {
  const md = instruction.metadata;
  if (md === undefined) throw messageInvalid('Message has no metadata');
  return create(pb.MessageSchema, {
    metadata: {
      runId: md.runId,
      messageId: randomBytes(16).toString('hex'),
      srcNodeId: o.srcNodeId,
      dstNodeId: md.srcNodeId,
      replyToMessageId: md.messageId,
      groupId: md.groupId,
      ttlSeconds: md.ttlSeconds,
      messageType: md.messageType,
      createdAt: BigInt(Math.trunc(o.now)),
    },
    body: { case: 'error', value: { code: error.code, reason: error.reason } },
  });
}

/** The chunk ids a wire message refers to: unique, in order of first use. */
export function chunkIdsOf(wire: WireMessage): string[] {
  const ids = new Set<string>();
  if (wire.body.case === 'content')
    for (const r of wire.body.value.records)
      if (r.record.case === 'arrays')
        for (const a of r.record.value.arrays) for (const id of a.chunkIds) ids.add(id);
  return [...ids];
}

// ---------------------------------------------------------------------------------------------
// Receiving

export interface FromWireOptions {
  /** Largest array accepted, in bytes (default 4 GiB). */
  maxArrayBytes?: number;
  /** Largest total of array bytes in one message (default 8 GiB). */
  maxTotalBytes?: number;
  /** The chunk source already verified each chunk's hash (e.g. downloadChunks): skip re-hashing. */
  verified?: boolean;
  /**
   * Receive float32 arrays of SHARED_ARRAY_MIN_BYTES or more into the aggregation kernel's memory
   * (strategies/kernel-memory.ts), where FedAvg's kernel and its worker threads read them in place:
   * for replies a ServerApp aggregates. Where that memory is full they go to shared memory.
   */
  kernelMemory?: boolean;
}

export type GetChunk = (id: string) => Promise<Uint8Array | undefined> | Uint8Array | undefined;

/** One array as planned from the wire header, before any allocation. */
interface ArrayPlan {
  name: string;
  dtype: DType;
  shape: number[];
  nbytes: number;
  inline: Uint8Array | undefined;
  chunkIds: string[];
  /** Size of every piece but the last (see the chunking convention in chunks.ts). */
  pieceSize: number;
}

type RecordPlan =
  | { name: string; kind: 'array'; arrays: ArrayPlan[] }
  | { name: string; kind: 'metric' | 'config'; record: MetricRecord | ConfigRecord };

interface MessagePlan {
  metadata: Metadata;
  error: MessageError | undefined;
  records: RecordPlan[];
}

function planMetadata(m: pb.Metadata | undefined): Metadata {
  if (m === undefined) throw messageInvalid('Message has no metadata');
  if (m.createdAt < 0n || m.createdAt > BigInt(Number.MAX_SAFE_INTEGER))
    throw messageInvalid('Message createdAt must be a time in milliseconds');
  return { ...sameMetadata(m), createdAt: Number(m.createdAt) };
}

/** The power-of-two piece size implied by nbytes and the number of pieces, or undefined. */
function pieceSizeOf(nbytes: number, pieces: number): number | undefined {
  if (pieces === 1) return nbytes;
  let size = 1;
  while (size * pieces < nbytes) size *= 2;
  return (pieces - 1) * size < nbytes ? size : undefined;
}

function pieceLength(plan: ArrayPlan, index: number): number {
  const last = plan.chunkIds.length - 1;
  return index < last ? plan.pieceSize : plan.nbytes - last * plan.pieceSize;
}

function planArray(a: pb.Array, maxArrayBytes: number): ArrayPlan {
  const where = `Array "${String(a.name).slice(0, 256)}"`;
  validateName('Array', a.name);
  if (!isDType(a.dtype))
    throw recordInvalid(`${where}: unknown dtype ${JSON.stringify(a.dtype.slice(0, 32))}`);
  const dtype = a.dtype;
  if (a.shape.length > MAX_NDIM) throw recordInvalid(`${where}: more than ${MAX_NDIM} dimensions`);
  let count = 1n;
  for (const dim of a.shape) {
    // uint64 cannot be negative, but SDK shapes are JS numbers: refuse what they cannot hold.
    if (dim < 0n || dim > BigInt(Number.MAX_SAFE_INTEGER))
      throw recordInvalid(`${where}: dimension too large`);
    count *= dim;
  }
  if (count * BigInt(DTYPES[dtype].bytes) !== a.nbytes)
    throw recordInvalid(
      `${where}: shape and dtype give ${count * BigInt(DTYPES[dtype].bytes)} bytes, nbytes says ${a.nbytes}`,
    );
  if (a.nbytes > BigInt(maxArrayBytes))
    throw new PollenError(
      'PAYLOAD_TOO_LARGE',
      `${where} is ${a.nbytes} bytes; at most ${maxArrayBytes} are accepted`,
    );
  const nbytes = Number(a.nbytes);
  const plan: ArrayPlan = {
    name: a.name,
    dtype,
    shape: a.shape.map(Number),
    nbytes,
    inline: undefined,
    chunkIds: a.chunkIds,
    pieceSize: 0,
  };
  if (a.chunkIds.length === 0) {
    if (a.inline.byteLength !== nbytes)
      throw recordInvalid(`${where}: ${a.inline.byteLength} inline bytes, nbytes says ${nbytes}`);
    plan.inline = a.inline;
    return plan;
  }
  if (a.inline.byteLength !== 0) throw recordInvalid(`${where} has both inline data and chunks`);
  for (const id of a.chunkIds)
    if (!isChunkId(id))
      throw new PollenError(
        'CHUNK_ID_INVALID',
        `${where}: invalid chunk id ${JSON.stringify(String(id).slice(0, 80))}`,
      );
  const pieceSize = a.chunkIds.length > nbytes ? undefined : pieceSizeOf(nbytes, a.chunkIds.length);
  if (pieceSize === undefined)
    throw recordInvalid(
      `${where}: ${a.chunkIds.length} chunks cannot hold ${nbytes} bytes in power-of-two pieces`,
    );
  plan.pieceSize = pieceSize;
  return plan;
}

function planMessage(wire: WireMessage, options: FromWireOptions): MessagePlan {
  const maxArrayBytes = options.maxArrayBytes ?? 4 * GiB;
  const maxTotalBytes = options.maxTotalBytes ?? 8 * GiB;
  const metadata = planMetadata(wire.metadata);
  const body = wire.body;
  if (body.case === 'error')
    return { metadata, error: { code: body.value.code, reason: body.value.reason }, records: [] };
  if (body.case !== 'content') throw messageInvalid('Message holds neither content nor an error');
  const names = new Set<string>();
  const records: RecordPlan[] = [];
  let total = 0;
  for (const r of body.value.records) {
    validateName('Record', r.name);
    if (names.has(r.name)) throw recordInvalid(`Duplicate record name "${r.name}"`);
    names.add(r.name);
    const rec = r.record;
    if (rec.case === 'arrays') {
      const arrays: ArrayPlan[] = [];
      const arrayNames = new Set<string>();
      for (const a of rec.value.arrays) {
        const plan = planArray(a, maxArrayBytes);
        if (arrayNames.has(plan.name))
          throw recordInvalid(`Duplicate array name "${plan.name}" in "${r.name}"`);
        arrayNames.add(plan.name);
        total += plan.nbytes;
        if (total > maxTotalBytes)
          throw new PollenError('PAYLOAD_TOO_LARGE', `Message arrays exceed ${maxTotalBytes} bytes in total`);
        arrays.push(plan);
      }
      records.push({ name: r.name, kind: 'array', arrays });
    } else if (rec.case === 'metrics') {
      const record = new MetricRecord();
      for (const e of rec.value.entries) {
        if (record.has(e.key)) throw recordInvalid(`Duplicate metric "${e.key}" in "${r.name}"`);
        if (e.value.case === 'scalar') record.set(e.key, e.value.value);
        else if (e.value.case === 'list') record.set(e.key, e.value.value.values);
        else throw recordInvalid(`Metric "${e.key}" in "${r.name}" has no value`);
      }
      records.push({ name: r.name, kind: 'metric', record });
    } else if (rec.case === 'configs') {
      const record = new ConfigRecord();
      for (const e of rec.value.entries) {
        if (record.has(e.key)) throw recordInvalid(`Duplicate config "${e.key}" in "${r.name}"`);
        const v = e.value;
        if (v.case === undefined) throw recordInvalid(`Config "${e.key}" in "${r.name}" has no value`);
        const value: ConfigValue =
          v.case === 'numbers' || v.case === 'texts' || v.case === 'flags' || v.case === 'binaries'
            ? v.value.values
            : v.value;
        record.set(e.key, value);
      }
      records.push({ name: r.name, kind: 'config', record });
    } else throw recordInvalid(`Record "${r.name}" has no content`);
  }
  return { metadata, error: undefined, records };
}

/**
 * Arrays of at least this many bytes are received into shared memory (float32 ones, with
 * `kernelMemory`, into the kernel's), so that aggregation can split them across threads
 * (strategies/kernel-workers.ts) without copying them first.
 */
export const SHARED_ARRAY_MIN_BYTES = 1 << 20;

/** The array's typed array and a byte view of it to copy the wire bytes into. */
interface Allocated {
  data: TypedArray;
  bytes: Uint8Array;
}

function allocate(plan: ArrayPlan, kernel: boolean): Allocated {
  const { bytes: width, ctor } = DTYPES[plan.dtype];
  const n = plan.nbytes / width;
  try {
    if (kernel && plan.dtype === 'float32' && plan.nbytes >= SHARED_ARRAY_MIN_BYTES) {
      const data = allocKernelFloat32(n);
      if (data !== null) return { data, bytes: new Uint8Array(data.buffer, data.byteOffset, plan.nbytes) };
    }
    const buffer =
      plan.nbytes >= SHARED_ARRAY_MIN_BYTES
        ? new SharedArrayBuffer(plan.nbytes)
        : new ArrayBuffer(plan.nbytes);
    return { data: new ctor(buffer, 0, n), bytes: new Uint8Array(buffer) };
  } catch (e) {
    throw new PollenError('PAYLOAD_TOO_LARGE', `Cannot allocate an array of ${plan.nbytes} bytes`, {
      cause: e,
    });
  }
}

function finishArray(plan: ArrayPlan, array: Allocated): TypedArray {
  if (!LITTLE_ENDIAN_HOST) swapBytes(array.bytes, DTYPES[plan.dtype].bytes);
  return array.data;
}

function buildMessage(plan: MessagePlan, buffers: Map<ArrayPlan, Allocated>): Message {
  if (plan.error !== undefined) return new Message({ metadata: plan.metadata, error: plan.error });
  const content = new RecordDict();
  for (const r of plan.records) {
    if (r.kind !== 'array') {
      content.set(r.name, r.record);
      continue;
    }
    const record = new ArrayRecord();
    for (const a of r.arrays)
      record.set(a.name, { dtype: a.dtype, shape: a.shape, data: finishArray(a, buffers.get(a)!) });
    content.set(r.name, record);
  }
  return new Message({ metadata: plan.metadata, content });
}

function missingError(ids: string[]): PollenError {
  return new PollenError(
    'CHUNK_MISSING',
    `Chunk ${ids[0]} is not available${ids.length > 1 ? ` (and ${ids.length - 1} more)` : ''}`,
    { data: { chunkIds: ids.slice(0, 16) } },
  );
}

/** Hash checks with memory: the same Uint8Array returned again for an id is not re-hashed. */
function verifier(skip: boolean): (id: string, data: Uint8Array) => void {
  const seen = new Map<string, Uint8Array>();
  return (id, data) => {
    if (skip || seen.get(id) === data) return;
    if (!(data instanceof Uint8Array) || chunkId(data) !== id)
      throw new PollenError('CHUNK_MISMATCH', `Chunk data does not match its id ${id}`, {
        data: { chunkId: id },
      });
    seen.set(id, data);
  };
}

function checkPieceLength(plan: ArrayPlan, index: number, id: string, data: Uint8Array): void {
  if (data.byteLength !== pieceLength(plan, index))
    throw recordInvalid(
      `Array "${plan.name}": chunk ${id} is ${data.byteLength} bytes where the array layout needs ${pieceLength(plan, index)}`,
    );
}

/**
 * The SDK message for `wire`, fetching chunks one at a time with `getChunk` (e.g. a ChunkStore's
 * get). Each array is allocated once and the chunks copied in, so peak memory is the model plus
 * one chunk.
 */
export async function messageFromWire(
  wire: WireMessage,
  getChunk: GetChunk,
  options: FromWireOptions = {},
): Promise<Message> {
  const plan = planMessage(wire, options);
  const verify = verifier(options.verified ?? false);
  const buffers = new Map<ArrayPlan, Allocated>();
  for (const r of plan.records) {
    if (r.kind !== 'array') continue;
    for (const a of r.arrays) {
      const array = allocate(a, options.kernelMemory ?? false);
      const { bytes } = array;
      if (a.inline !== undefined) bytes.set(a.inline);
      let offset = 0;
      for (const [i, id] of a.chunkIds.entries()) {
        const data = await getChunk(id);
        if (data === undefined) throw missingError([id]);
        verify(id, data);
        checkPieceLength(a, i, id, data);
        bytes.set(data, offset);
        offset += data.byteLength;
      }
      buffers.set(a, array);
    }
  }
  return buildMessage(plan, buffers);
}

export interface StreamingOptions extends FromWireOptions {
  /** Where to get chunks the stream did not bring (e.g. those already held locally). */
  getChunk?: GetChunk;
}

/**
 * Like messageFromWire, but chunks arrive as a stream in any order (e.g. a PullChunks response).
 * All arrays are allocated up front and each chunk is copied to every place that uses it, then
 * dropped: memory is the model plus the chunks in flight. Unknown and repeated chunks are ignored.
 */
export async function messageFromWireStreaming(
  wire: WireMessage,
  chunks: AsyncIterable<{ id: string; data: Uint8Array }>,
  options: StreamingOptions = {},
): Promise<Message> {
  const plan = planMessage(wire, options);
  const verify = verifier(options.verified ?? false);
  const buffers = new Map<ArrayPlan, Allocated>();
  const places = new Map<string, { plan: ArrayPlan; index: number; bytes: Uint8Array; offset: number }[]>();
  for (const r of plan.records) {
    if (r.kind !== 'array') continue;
    for (const a of r.arrays) {
      const array = allocate(a, options.kernelMemory ?? false);
      const { bytes } = array;
      buffers.set(a, array);
      if (a.inline !== undefined) bytes.set(a.inline);
      for (const [index, id] of a.chunkIds.entries()) {
        const list = places.get(id) ?? [];
        // One id is one content, hence one length: a layout that needs two is inconsistent.
        if (list[0] !== undefined && pieceLength(list[0].plan, list[0].index) !== pieceLength(a, index))
          throw recordInvalid(`Chunk ${id} is used with two different lengths`);
        list.push({ plan: a, index, bytes, offset: index * a.pieceSize });
        places.set(id, list);
      }
    }
  }
  const fill = (id: string, data: Uint8Array): void => {
    const list = places.get(id)!;
    verify(id, data);
    for (const p of list) {
      checkPieceLength(p.plan, p.index, id, data);
      p.bytes.set(data, p.offset);
    }
    places.delete(id);
  };
  for await (const { id, data } of chunks) if (places.has(id)) fill(id, data);
  for (const id of [...places.keys()]) {
    const data = await options.getChunk?.(id);
    if (data === undefined) throw missingError([...places.keys()]);
    fill(id, data);
  }
  return buildMessage(plan, buffers);
}
