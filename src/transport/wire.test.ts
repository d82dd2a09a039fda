import { clone, create, fromBinary, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { everyDType, expectSameArrays } from '../../test/support/dtypes.js';
import { pollenCodeOf } from '../../test/support/errors.js';
import { PollenError } from '../errors.js';
import * as pb from '../gen/pollen/v1/records_pb.js';
import { Message } from '../sdk/message.js';
import { ArrayRecord, ConfigRecord, MetricRecord, RecordDict } from '../sdk/records.js';
import { inKernelMemory } from '../strategies/kernel-memory.js';
import { chunkId } from './chunks.js';
import {
  chunkIdsOf,
  configFromWire,
  configToWire,
  messageFromWire,
  messageFromWireStreaming,
  messageToWire,
  SHARED_ARRAY_MIN_BYTES,
  type WireMessage,
} from './wire.js';

const metadata = {
  runId: 'run-1',
  messageId: 'm-1',
  srcNodeId: '0',
  dstNodeId: '7',
  replyToMessageId: '',
  groupId: 'round-1',
  ttlSeconds: 3600,
  messageType: 'train' as const,
  createdAt: 1_700_000_000_123,
};

function msg(content: RecordDict): Message {
  return new Message({ metadata, content });
}

/** Serialise and parse, as the network would. */
function overTheWire(wire: WireMessage): WireMessage {
  return fromBinary(pb.MessageSchema, toBinary(pb.MessageSchema, wire));
}

async function roundTrip(message: Message, options = {}): Promise<Message> {
  const { wire, chunks } = messageToWire(message, options);
  return messageFromWire(overTheWire(wire), (id) => chunks.get(id));
}

const ramp = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3);

describe('messageToWire / messageFromWire', () => {
  it('round-trips every dtype, shape, metric and config kind', async () => {
    const arrays = new ArrayRecord()
      .set('f32', { dtype: 'float32', shape: [2, 3], data: ramp(6) })
      .set('f64', { dtype: 'float64', shape: [3], data: new Float64Array([Math.PI, -0, 1e300]) })
      .set('i32', { dtype: 'int32', shape: [2], data: new Int32Array([-2147483648, 2147483647]) })
      .set('i64', { dtype: 'int64', shape: [2], data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]) })
      .set('u8', { dtype: 'uint8', shape: [4], data: new Uint8Array([0, 1, 254, 255]) })
      .set('scalar', { dtype: 'float32', shape: [], data: new Float32Array([42]) })
      .set('empty', { dtype: 'float64', shape: [0, 5], data: new Float64Array(0) });
    const metrics = new MetricRecord({ loss: 0.25, n: 100, curve: [1, 0.5, 0.25], none: [] });
    const configs = new ConfigRecord({
      lr: 0.01,
      name: 'fedavg',
      flag: false,
      blob: new Uint8Array([1, 2, 3]),
      nums: [1, 2],
      texts: ['a', 'b'],
      flags: [true, false],
      blobs: [new Uint8Array([9]), new Uint8Array(0)],
      empty: [],
    });
    const content = new RecordDict({ arrays, metrics, configs, nothing: new ArrayRecord() });
    const back = await roundTrip(msg(content));
    expect(back.metadata).toEqual(metadata);
    const got = back.contentOrThrow;
    expect([...got.keys()]).toEqual(['arrays', 'metrics', 'configs', 'nothing']);
    const a = got.getArrayRecord('arrays')!;
    expect([...a.keys()]).toEqual([...arrays.keys()]);
    for (const [name, e] of arrays) {
      const g = a.get(name)!;
      expect(g.dtype).toBe(e.dtype);
      expect(g.shape).toEqual(e.shape);
      expect(g.data).toEqual(e.data);
      expect(g.data.constructor).toBe(e.data.constructor);
    }
    expect(Object.is(a.get('f64')!.data[1], -0)).toBe(true);
    expect(got.getMetricRecord('metrics')!.toObject()).toEqual(metrics.toObject());
    expect(got.getConfigRecord('configs')!.toObject()).toEqual(configs.toObject());
    expect(got.getArrayRecord('nothing')!.size).toBe(0);
  });

  it('carries every dtype bit-exactly under its name, inline and in chunks of any size', async () => {
    const arrays = everyDType();
    for (const options of [{}, { inlineMax: 0, chunkSize: 8 }, { inlineMax: 4, chunkSize: 2 }]) {
      const { wire } = messageToWire(msg(new RecordDict({ arrays })), options);
      const sent = ((wire.body.value as pb.RecordDict).records[0]!.record.value as pb.ArrayRecord).arrays;
      expect(sent.map((a) => `${a.name}:${a.dtype}`)).toEqual([...arrays].map(([n, e]) => `${n}:${e.dtype}`));
      const back = await roundTrip(msg(new RecordDict({ arrays })), options);
      expectSameArrays(back.contentOrThrow.getArrayRecord('arrays')!, arrays);
    }
  });

  it('carries a large uint64 array over several 4 MiB chunks', async () => {
    const data = new BigUint64Array(1_200_000);
    new Uint32Array(data.buffer).forEach((_, i, words) => {
      words[i] = i * 2654435761; // distinct words, so a misplaced chunk shows
    });
    const arrays = new ArrayRecord().set('big', { dtype: 'uint64', shape: [1000, 1200], data });
    const { wire } = messageToWire(msg(new RecordDict({ arrays })));
    expect(chunkIdsOf(wire)).toHaveLength(3); // 9.6 MB in 4 MiB pieces
    const back = await roundTrip(msg(new RecordDict({ arrays })));
    expectSameArrays(back.contentOrThrow.getArrayRecord('arrays')!, arrays);
  });

  it('receives arrays of SHARED_ARRAY_MIN_BYTES or more into shared memory (aggregation threads read them)', async () => {
    const arrays = new ArrayRecord()
      .set('big', {
        dtype: 'float32',
        shape: [SHARED_ARRAY_MIN_BYTES / 4],
        data: new Float32Array(SHARED_ARRAY_MIN_BYTES / 4),
      })
      .set('small', { dtype: 'float32', shape: [10], data: new Float32Array(10) });
    const back = (await roundTrip(msg(new RecordDict({ arrays })))).contentOrThrow.getArrayRecord('arrays')!;
    expect(back.get('big')?.data.buffer instanceof SharedArrayBuffer).toBe(true);
    expect(back.get('small')?.data.buffer instanceof SharedArrayBuffer).toBe(false);
  });

  it('receives large float32 arrays into the kernel memory with kernelMemory, read in place by FedAvg', async () => {
    const n = SHARED_ARRAY_MIN_BYTES / 4 + 3;
    const arrays = new ArrayRecord()
      .set('big', { dtype: 'float32', shape: [n], data: ramp(n) })
      .set('wide', { dtype: 'float64', shape: [n], data: Float64Array.from(ramp(n)) })
      .set('small', { dtype: 'float32', shape: [10], data: ramp(10) });
    const { wire, chunks } = messageToWire(msg(new RecordDict({ arrays })));
    const get = (id: string) => chunks.get(id);
    const back = (await messageFromWire(overTheWire(wire), get, { kernelMemory: true })).contentOrThrow;
    const record = back.getArrayRecord('arrays')!;
    expectSameArrays(record, arrays);
    expect(inKernelMemory(record.get('big')?.data as Float32Array)).toBe(true);
    expect(record.get('wide')?.data.buffer instanceof SharedArrayBuffer).toBe(true);
    expect(record.get('small')?.data.buffer instanceof SharedArrayBuffer).toBe(false);
    // Without the option: ordinary shared memory, as before.
    const plain = (await messageFromWire(overTheWire(wire), get)).contentOrThrow.getArrayRecord('arrays')!;
    expect(inKernelMemory(plain.get('big')?.data as Float32Array)).toBe(false);
    // Streaming decode takes the option too.
    const stream = async function* () {
      for (const [id, data] of chunks) yield { id, data };
    };
    const streamed = await messageFromWireStreaming(overTheWire(wire), stream(), { kernelMemory: true });
    const big = streamed.contentOrThrow.getArrayRecord('arrays')!.get('big')?.data as Float32Array;
    expect(inKernelMemory(big)).toBe(true);
    expect(Array.from(big.subarray(n - 3))).toEqual(Array.from(ramp(n).subarray(n - 3)));
    // Sent on, its chunks are copies: the block may be reused once the array is collected.
    const again = messageToWire(
      msg(
        new RecordDict({ arrays: new ArrayRecord().set('big', { dtype: 'float32', shape: [n], data: big }) }),
      ),
    );
    for (const piece of again.chunks.values()) expect(piece.buffer).not.toBe(big.buffer);
  });

  it('round-trips an empty message and an error reply', async () => {
    const empty = await roundTrip(msg(new RecordDict()));
    expect(empty.contentOrThrow.size).toBe(0);
    const instruction = msg(new RecordDict());
    const reply = instruction.createErrorReply({ code: 'CLIENT_APP_RAISED_EXCEPTION', reason: 'boom' });
    const { wire, chunks } = messageToWire(reply);
    expect(chunks.size).toBe(0);
    const back = await messageFromWire(overTheWire(wire), () => undefined);
    expect(back.error).toEqual({ code: 'CLIENT_APP_RAISED_EXCEPTION', reason: 'boom' });
    expect(back.metadata.replyToMessageId).toBe('m-1');
    expect(back.content).toBeUndefined();
  });

  it('sends small arrays inline and large ones as chunks that are views, not copies', () => {
    const big = ramp(1000); // 4000 bytes
    const small = ramp(10);
    const message = msg(new RecordDict({ w: ArrayRecord.fromArrays({ big, small }) }));
    const { wire, chunks } = messageToWire(message, { inlineMax: 64, chunkSize: 1024 });
    const arrays = (wire.body.value as pb.RecordDict).records[0]!.record.value as pb.ArrayRecord;
    const [wb, ws] = arrays.arrays;
    expect(ws!.inline.byteLength).toBe(40);
    expect(ws!.chunkIds).toEqual([]);
    expect(wb!.inline.byteLength).toBe(0);
    expect(wb!.nbytes).toBe(4000n);
    expect(wb!.chunkIds).toHaveLength(4); // 1024 × 3 + 928
    const bytes = new Uint8Array(big.buffer);
    wb!.chunkIds.forEach((id, i) => {
      const piece = chunks.get(id)!;
      expect(piece.buffer).toBe(big.buffer); // a view: no copy
      expect(piece.byteOffset).toBe(i * 1024);
      expect(piece.byteLength).toBe(i < 3 ? 1024 : 928);
      expect(id).toBe(chunkId(bytes.subarray(i * 1024, i * 1024 + 1024)));
      expect(id).toMatch(/^[0-9a-f]{64}$/);
    });
    expect(chunkIdsOf(wire)).toEqual(wb!.chunkIds);
  });

  it('reassembles multi-chunk arrays exactly, also with repeated identical chunks', async () => {
    const zeros = new Float64Array(4096); // 32 KiB of zeros: 8 identical 4 KiB chunks
    const mixed = new Float32Array(5000);
    mixed.set(ramp(2500), 2500); // first chunks all zero, then distinct ones
    const message = msg(
      new RecordDict({ w: ArrayRecord.fromArrays({ zeros, mixed, again: zeros.slice() }) }),
    );
    const { wire, chunks } = messageToWire(message, { inlineMax: 0, chunkSize: 4096 });
    const ids = chunkIdsOf(wire);
    expect(new Set(ids).size).toBe(ids.length);
    expect(chunks.size).toBe(ids.length);
    expect(ids.length).toBeLessThan(8 + 5 + 8);
    const back = await messageFromWire(overTheWire(wire), (id) => chunks.get(id));
    const w = back.contentOrThrow.getArrayRecord('w')!;
    expect(w.get('zeros')!.data).toEqual(zeros);
    expect(w.get('mixed')!.data).toEqual(mixed);
    expect(w.get('again')!.data).toEqual(zeros);
    // Each array owns its memory, aligned for its element type.
    expect(w.get('zeros')!.data.buffer).not.toBe(w.get('again')!.data.buffer);
  });

  it('rejects a chunk size that is not a power of two', () => {
    expect(() => messageToWire(msg(new RecordDict()), { chunkSize: 1000 })).toThrow(PollenError);
  });
});

describe('messageFromWireStreaming', () => {
  it('fills arrays from chunks arriving in any order, every place a chunk is used', async () => {
    const a = new Float32Array(3000);
    a.set(ramp(1000), 2000);
    const b = new Float32Array(1024); // identical to a's first chunks
    const message = msg(new RecordDict({ w: ArrayRecord.fromArrays({ a, b, tiny: ramp(3) }) }));
    const { wire, chunks } = messageToWire(message, { inlineMax: 16, chunkSize: 2048 });
    const entries = [...chunks].reverse();
    async function* stream() {
      yield { id: 'f'.repeat(64), data: new Uint8Array(3) }; // unknown: ignored
      for (const [id, data] of entries) {
        yield { id, data: data.slice() };
        yield { id, data: data.slice() }; // repeats: ignored
      }
    }
    const back = await messageFromWireStreaming(overTheWire(wire), stream());
    const w = back.contentOrThrow.getArrayRecord('w')!;
    expect(w.get('a')!.data).toEqual(a);
    expect(w.get('b')!.data).toEqual(b);
    expect(w.get('tiny')!.data).toEqual(ramp(3));
  });

  it('takes chunks the stream lacks from getChunk, and names a missing one', async () => {
    const a = ramp(4096);
    const { wire, chunks } = messageToWire(msg(new RecordDict({ w: ArrayRecord.fromArrays({ a }) })), {
      chunkSize: 4096,
      inlineMax: 0,
    });
    const [first, ...rest] = [...chunks];
    async function* some() {
      yield { id: first![0], data: first![1] };
    }
    const back = await messageFromWireStreaming(wire, some(), { getChunk: (id) => chunks.get(id) });
    expect(back.contentOrThrow.getArrayRecord('w')!.get('a')!.data).toEqual(a);
    try {
      await messageFromWireStreaming(wire, some());
      expect.unreachable();
    } catch (e) {
      expect((e as PollenError).code).toBe('CHUNK_MISSING');
      expect((e as PollenError).data?.chunkIds).toEqual(rest.map(([id]) => id));
    }
  });

  it('refuses a chunk whose bytes do not match its id', async () => {
    const a = ramp(2048);
    const { wire, chunks } = messageToWire(msg(new RecordDict({ w: ArrayRecord.fromArrays({ a }) })), {
      chunkSize: 4096,
      inlineMax: 0,
    });
    async function* tampered() {
      for (const [id, data] of chunks) {
        const copy = data.slice();
        copy[0]! ^= 1;
        yield { id, data: copy };
      }
    }
    expect(await pollenCodeOf(messageFromWireStreaming(wire, tampered()))).toBe('CHUNK_MISMATCH');
  });
});

type ArrayInit = Omit<MessageInitShape<typeof pb.ArraySchema>, '$typeName'>;

describe('hostile wire messages', () => {
  const id0 = chunkId(new Uint8Array(8));
  function wireWith(array: ArrayInit): WireMessage {
    const good = messageToWire(msg(new RecordDict())).wire;
    return create(pb.MessageSchema, {
      metadata: good.metadata,
      body: {
        case: 'content',
        value: {
          records: [
            {
              name: 'w',
              record: { case: 'arrays', value: { arrays: [{ name: 'x', dtype: 'float32', ...array }] } },
            },
          ],
        },
      },
    });
  }
  const cases: [string, ArrayInit, string][] = [
    [
      'unknown dtype',
      { dtype: 'complex64', shape: [2n], nbytes: 16n, inline: new Uint8Array(16) },
      'RECORD_INVALID',
    ],
    [
      'a bool byte other than 0 or 1',
      { dtype: 'bool', shape: [2n], nbytes: 2n, inline: Uint8Array.from([1, 2]) },
      'RECORD_INVALID',
    ],
    ['shape × itemsize ≠ nbytes', { shape: [3n], nbytes: 8n, inline: new Uint8Array(8) }, 'RECORD_INVALID'],
    ['inline length ≠ nbytes', { shape: [2n], nbytes: 8n, inline: new Uint8Array(4) }, 'RECORD_INVALID'],
    [
      'inline and chunks',
      { shape: [2n], nbytes: 8n, inline: new Uint8Array(8), chunkIds: [id0] },
      'RECORD_INVALID',
    ],
    ['no data at all', { shape: [2n], nbytes: 8n }, 'RECORD_INVALID'],
    ['huge dimension', { shape: [2n ** 60n, 0n], nbytes: 0n }, 'RECORD_INVALID'],
    [
      'too many dimensions',
      { shape: Array(33).fill(1n), nbytes: 4n, inline: new Uint8Array(4) },
      'RECORD_INVALID',
    ],
    ['array over the cap', { shape: [2n ** 31n], nbytes: 2n ** 33n, chunkIds: [id0] }, 'PAYLOAD_TOO_LARGE'],
    ['bad chunk id', { shape: [2n], nbytes: 8n, chunkIds: ['ABC'] }, 'CHUNK_ID_INVALID'],
    ['more chunks than bytes', { shape: [1n], nbytes: 4n, chunkIds: Array(5).fill(id0) }, 'RECORD_INVALID'],
    // 3 chunks cannot hold 8 bytes in power-of-two pieces of 4 (2 would) or 2 (4 would).
    ['chunk count off the layout', { shape: [2n], nbytes: 8n, chunkIds: [id0, id0, id0] }, 'RECORD_INVALID'],
    ['bad array name', { name: '', shape: [1n], nbytes: 4n, inline: new Uint8Array(4) }, 'RECORD_INVALID'],
  ];
  for (const [what, array, code] of cases)
    it(`${what} → ${code}`, async () => {
      const wire = overTheWire(wireWith(array));
      expect(await pollenCodeOf(messageFromWire(wire, () => new Uint8Array(8)))).toBe(code);
      expect(await pollenCodeOf(messageFromWireStreaming(wire, (async function* () {})()))).toBe(code);
    });

  it('chunks whose sizes do not add up, mismatched and missing chunks', async () => {
    const a = ramp(3000); // 12000 bytes = 4096 + 4096 + 3808
    const { wire, chunks } = messageToWire(msg(new RecordDict({ w: ArrayRecord.fromArrays({ a }) })), {
      chunkSize: 4096,
      inlineMax: 0,
    });
    const ids = chunkIdsOf(wire);
    // A real chunk of the wrong length at a position: hashes fine, breaks the layout.
    const short = new Uint8Array(100);
    const shortId = chunkId(short);
    const arr = ((wire.body.value as pb.RecordDict).records[0]!.record.value as pb.ArrayRecord).arrays[0]!;
    const swapped = clone(pb.MessageSchema, wire);
    ((swapped.body.value as pb.RecordDict).records[0]!.record.value as pb.ArrayRecord).arrays[0] = create(
      pb.ArraySchema,
      { ...arr, chunkIds: [ids[0]!, shortId, ids[2]!] },
    );
    const lookup = (id: string) => (id === shortId ? short : chunks.get(id));
    expect(await pollenCodeOf(messageFromWire(swapped, lookup))).toBe('RECORD_INVALID');
    // Wrong bytes for an id.
    expect(await pollenCodeOf(messageFromWire(wire, () => new Uint8Array(4096)))).toBe('CHUNK_MISMATCH');
    // Missing chunk: the error names it.
    try {
      await messageFromWire(wire, (id) => (id === ids[1] ? undefined : chunks.get(id)));
      expect.unreachable();
    } catch (e) {
      expect((e as PollenError).code).toBe('CHUNK_MISSING');
      expect((e as PollenError).data?.chunkIds).toEqual([ids[1]]);
      expect((e as PollenError).message).toContain(ids[1]);
    }
    // Async getChunk works the same.
    const back = await messageFromWire(wire, async (id) => chunks.get(id));
    expect(back.contentOrThrow.getArrayRecord('w')!.get('a')!.data).toEqual(a);
  });

  it('caps the total bytes of a message before allocating anything', async () => {
    const wire = wireWith({ shape: [2n ** 29n], nbytes: 2n ** 31n, chunkIds: Array(512).fill(id0) });
    expect(await pollenCodeOf(messageFromWire(wire, () => undefined, { maxTotalBytes: 2 ** 30 }))).toBe(
      'PAYLOAD_TOO_LARGE',
    );
    expect(await pollenCodeOf(messageFromWire(wire, () => undefined, { maxArrayBytes: 2 ** 30 }))).toBe(
      'PAYLOAD_TOO_LARGE',
    );
  });

  it('metadata, body, record and value problems', async () => {
    const good = messageToWire(msg(new RecordDict())).wire;
    const variants: [MessageInitShape<typeof pb.MessageSchema>, string][] = [
      [{ metadata: undefined }, 'MESSAGE_INVALID'],
      [{ body: { case: undefined } }, 'MESSAGE_INVALID'],
      [{ metadata: { ...good.metadata!, messageType: 'steal' } }, 'MESSAGE_INVALID'],
      [{ metadata: { ...good.metadata!, messageId: '' } }, 'MESSAGE_INVALID'],
      [{ metadata: { ...good.metadata!, createdAt: -1n } }, 'MESSAGE_INVALID'],
      [{ metadata: { ...good.metadata!, ttlSeconds: Number.NaN } }, 'MESSAGE_INVALID'],
      [{ body: { case: 'error', value: create(pb.MessageErrorSchema, { code: '' }) } }, 'MESSAGE_INVALID'],
    ];
    for (const [patch, code] of variants) {
      const wire = create(pb.MessageSchema, { ...good, ...patch } as MessageInitShape<
        typeof pb.MessageSchema
      >);
      expect(
        await pollenCodeOf(messageFromWire(wire, () => undefined)),
        JSON.stringify(Object.keys(patch)),
      ).toBe(code);
    }
    const withRecords = (records: MessageInitShape<typeof pb.RecordSchema>[]) =>
      create(pb.MessageSchema, { metadata: good.metadata, body: { case: 'content', value: { records } } });
    type RecordInit = MessageInitShape<typeof pb.RecordSchema>;
    type Entries<C extends 'metrics' | 'configs'> = NonNullable<
      Extract<NonNullable<RecordInit['record']>, { case: C }>['value']['entries']
    >;
    /** One record, named r, of these entries. */
    const metrics = (entries: Entries<'metrics'>): RecordInit[] => [
      { name: 'r', record: { case: 'metrics', value: { entries } } },
    ];
    const configs = (entries: Entries<'configs'>): RecordInit[] => [
      { name: 'r', record: { case: 'configs', value: { entries } } },
    ];
    const array = { name: 'a', dtype: 'uint8', shape: [1n], nbytes: 1n, inline: new Uint8Array(1) };
    const bad: [RecordInit[], string][] = [
      [[{ name: 'r' }], 'RECORD_INVALID'],
      [[{ name: '', record: { case: 'metrics', value: {} } }], 'RECORD_INVALID'],
      [
        [
          { name: 'r', record: { case: 'metrics', value: {} } },
          { name: 'r', record: { case: 'configs', value: {} } },
        ],
        'RECORD_INVALID',
      ],
      [metrics([{ key: 'x' }]), 'RECORD_INVALID'],
      [metrics([{ key: 'x', value: { case: 'scalar', value: Number.NaN } }]), 'RECORD_INVALID'],
      [
        metrics([{ key: 'x', value: { case: 'list', value: { values: [1, Number.POSITIVE_INFINITY] } } }]),
        'RECORD_INVALID',
      ],
      [
        metrics([
          { key: 'x', value: { case: 'scalar', value: 1 } },
          { key: 'x', value: { case: 'scalar', value: 2 } },
        ]),
        'RECORD_INVALID',
      ],
      [configs([{ key: 'x' }]), 'RECORD_INVALID'],
      [configs([{ key: 'x', value: { case: 'number', value: Number.NaN } }]), 'RECORD_INVALID'],
      [[{ name: 'r', record: { case: 'arrays', value: { arrays: [array, array] } } }], 'RECORD_INVALID'],
    ];
    for (const [records, code] of bad)
      expect(await pollenCodeOf(messageFromWire(overTheWire(withRecords(records)), () => undefined))).toBe(
        code,
      );
  });
});

describe('configToWire / configFromWire', () => {
  it('round-trips numbers, strings and booleans', () => {
    const config = { lr: 0.1, 'num-rounds': 3, name: 'x', flag: true, off: false, empty: '' };
    const wire = configToWire(config);
    const parsed = fromBinary(
      pb.RunSchema,
      toBinary(pb.RunSchema, create(pb.RunSchema, { runConfig: wire })),
    );
    expect(configFromWire(parsed.runConfig)).toEqual(config);
  });

  it('refuses non-finite numbers, bad keys and empty values', () => {
    expect(() => configToWire({ x: Number.NaN })).toThrow(PollenError);
    expect(() => configToWire({ x: {} as unknown as string })).toThrow(PollenError);
    expect(() => configFromWire({ x: create(pb.ConfigValueSchema, {}) })).toThrow(/has no value/);
    expect(() =>
      configFromWire({
        x: create(pb.ConfigValueSchema, { value: { case: 'number', value: Number.POSITIVE_INFINITY } }),
      }),
    ).toThrow(PollenError);
    expect(() =>
      configFromWire({ '\u0001': create(pb.ConfigValueSchema, { value: { case: 'flag', value: true } }) }),
    ).toThrow(PollenError);
  });

  it('keeps a "__proto__" key as data', () => {
    const wire = { ...configToWire({ a: 1 }) };
    Object.defineProperty(wire, '__proto__', {
      value: create(pb.ConfigValueSchema, { value: { case: 'number', value: 5 } }),
      enumerable: true,
    });
    const out = configFromWire(wire);
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.hasOwn(out, '__proto__')).toBe(true);
  });
});
