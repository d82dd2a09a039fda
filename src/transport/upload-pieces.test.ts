// uploadPieces / uploadMessages: hashing overlapped with the bulk uploads, against a fake bulk client
// (bulkChunkTransport over it, with fake chunk RPCs).
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { Message } from '../sdk/message.js';
import { ArrayRecord, RecordDict } from '../sdk/records.js';
import { type BulkChunkClient, bulkChunkTransport } from './bulk-client.js';
import { type ChunkRpcClient, rpcChunkTransport } from './chunk-rpc.js';
import { uploadMessage, uploadMessages, uploadPieces } from './chunk-transfer.js';
import { chunkId } from './chunks.js';
import { messagePieces, messageToWire } from './wire.js';

interface Put {
  id: string;
  data: Uint8Array;
  signal: AbortSignal | undefined;
}

/** A bulk client that records its PUTs; `gate` decides when (and whether) each one succeeds. */
function fakeBulk(gate: (put: Put, index: number) => Promise<void> = async () => {}) {
  const puts: Put[] = [];
  const bulk = {
    supported: true,
    async put(id: string, data: Uint8Array, signal?: AbortSignal) {
      const put = { id, data, signal };
      puts.push(put);
      await gate(put, puts.length - 1);
    },
  } as unknown as BulkChunkClient;
  return { bulk, puts };
}

/** A Connect-like client whose MissingChunks answers from `held`; counts its calls. */
function fakeClient(held = new Set<string>()) {
  const asked: string[][] = [];
  const client: ChunkRpcClient = {
    async missingChunks({ chunkIds }) {
      asked.push(chunkIds);
      return { chunkIds: chunkIds.filter((id) => !held.has(id)) };
    },
    async pushChunks() {
      throw new Error('the RPC must not be used');
    },
  };
  return { client, asked };
}

/** The bulk route of `bulk`, with MissingChunks (and the fallback) over `client`. */
const over = (bulk: BulkChunkClient, client: ChunkRpcClient) =>
  bulkChunkTransport(bulk, rpcChunkTransport(client));

/** An array of pieces that records which indices were read (i.e. hashed). */
function watched(pieces: Uint8Array[]): { pieces: Uint8Array[]; read: Set<number> } {
  const read = new Set<number>();
  const proxy = new Proxy(pieces, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) read.add(Number(key));
      return Reflect.get(target, key, receiver);
    },
  });
  return { pieces: proxy, read };
}

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

function model(): Message {
  const w = new Float32Array(40_000).map((_, i) => Math.sin(i));
  return Message.create({
    content: new RecordDict({
      model: ArrayRecord.fromArrays({ w, zeros: new Float32Array(30_000), tiny: new Float32Array([1, 2]) }),
    }),
    dstNodeId: '1',
    messageType: 'train',
  });
}

describe('uploadPieces', () => {
  it('returns the chunk id of every piece in order and PUTs each distinct piece once, uncopied', async () => {
    const source = randomBytes(5 * 1000);
    const parts = [0, 1, 2, 3, 4].map((k) => source.subarray(k * 1000, (k + 1) * 1000));
    const pieces = [parts[0]!, parts[1]!, parts[0]!, parts[2]!, parts[3]!, parts[4]!, parts[1]!];
    const { bulk, puts } = fakeBulk();
    const { client, asked } = fakeClient();
    const r = await uploadPieces(over(bulk, client), pieces, { fresh: true });
    expect(r.ids).toEqual(pieces.map((p) => chunkId(p)));
    expect(r).toMatchObject({ sent: 5, bytes: 5000, skipped: 0 });
    expect(asked).toEqual([]); // fresh: no MissingChunks round trip
    expect(puts.map((p) => p.id)).toEqual(parts.map((p) => chunkId(p)));
    for (const [k, put] of puts.entries()) {
      expect(put.data).toBe(parts[k]); // the caller's view itself
      expect(put.data.buffer).toBe(source.buffer);
    }
  });

  it('asks MissingChunks about chunks not marked fresh and skips those the peer holds', async () => {
    const pieces = [0, 1, 2, 3].map(() => randomBytes(100));
    const ids = pieces.map((p) => chunkId(p));
    const { bulk, puts } = fakeBulk();
    const { client, asked } = fakeClient(new Set([ids[1]!, ids[3]!]));
    const r = await uploadPieces(over(bulk, client), pieces, { fresh: (id) => id === ids[0] });
    expect(r.ids).toEqual(ids);
    expect(r).toMatchObject({ sent: 2, skipped: 2 });
    expect(new Set(puts.map((p) => p.id))).toEqual(new Set([ids[0], ids[2]]));
    expect(asked.flat().sort()).toEqual([ids[1], ids[2], ids[3]].sort());
    // Default: every chunk is asked about.
    const again = fakeClient(new Set(ids));
    const none = fakeBulk();
    expect(await uploadPieces(over(none.bulk, again.client), pieces)).toMatchObject({
      sent: 0,
      skipped: 4,
    });
    expect(none.puts).toEqual([]);
  });

  it('starts uploading after the first hash and stays `ahead` chunks in front of the uploads', async () => {
    const { pieces, read } = watched([0, 1, 2, 3, 4, 5].map(() => randomBytes(1000)));
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const { bulk, puts } = fakeBulk((_put, index) => (index === 0 ? held : Promise.resolve()));
    const { client } = fakeClient();
    const done = uploadPieces(over(bulk, client), pieces, { fresh: true, concurrency: 1, ahead: 1 });
    await turns(20);
    expect(puts.length).toBe(1); // the first chunk is on the wire …
    expect([...read].sort()).toEqual([0, 1]); // … and only the next one was hashed meanwhile
    release();
    const r = await done;
    expect(r.sent).toBe(6);
    expect(r.ids).toEqual([0, 1, 2, 3, 4, 5].map((i) => chunkId(pieces[i]!)));
  });

  it('a failure mid-stream rejects with it, cancels the chunks in flight and stops hashing', async () => {
    const { pieces, read } = watched(Array.from({ length: 40 }, () => randomBytes(1000)));
    const refused = new PollenError('PERMISSION_DENIED', 'no more');
    const aborted: boolean[] = [];
    const { bulk, puts } = fakeBulk(async (put, index) => {
      if (index === 2) throw refused;
      if (index < 2) return;
      // Chunks in flight with the failing one: wait until cancelled.
      await new Promise<void>((_, reject) =>
        put.signal!.addEventListener('abort', () => {
          aborted.push(true);
          reject(new PollenError('UNAVAILABLE', 'The chunk transfer was cancelled'));
        }),
      );
    });
    const { client } = fakeClient();
    await expect(uploadPieces(over(bulk, client), pieces, { fresh: true, concurrency: 4 })).rejects.toBe(
      refused,
    );
    const started = puts.length;
    await turns(20);
    expect(puts.length).toBe(started); // nothing started after the failure
    expect(aborted.length).toBe(started - 3);
    expect(read.size).toBeLessThan(40);
  });

  it('falls back to the RPCs when the server has no bulk route', async () => {
    const pieces = [0, 1, 2].map(() => randomBytes(100));
    const { bulk } = fakeBulk(async () => {
      throw new PollenError('ROUTE_NOT_FOUND', 'HTTP 404');
    });
    const pushed: string[] = [];
    const client: ChunkRpcClient = {
      async missingChunks({ chunkIds }) {
        return { chunkIds };
      },
      async pushChunks(stream) {
        for await (const c of stream) pushed.push(c.id);
        return {};
      },
    };
    const r = await uploadPieces(over(bulk, client), pieces, { fresh: true });
    expect(r.ids).toEqual(pieces.map((p) => chunkId(p)));
    expect(pushed).toEqual(r.ids);
    expect(bulk.supported).toBe(false);
  });
});

describe('uploadMessages', () => {
  it('builds the same wire messages as messageToWire, with the chunks uploaded', async () => {
    const a = model();
    const b = model().withMetadata({ dstNodeId: '2' });
    const { bulk, puts } = fakeBulk();
    const { client } = fakeClient();
    const { wires, upload } = await uploadMessages(over(bulk, client), [a, b], {
      fresh: true,
      toWire: { chunkSize: 16_384 },
    });
    for (const [k, m] of [a, b].entries()) {
      const plain = messageToWire(m, { chunkSize: 16_384 });
      expect(wires[k]!.wire).toEqual(plain.wire);
      expect([...wires[k]!.chunks.keys()]).toEqual([...plain.chunks.keys()]);
    }
    // Both messages share their chunks: each is sent once.
    expect(upload.sent).toBe(wires[0]!.chunks.size);
    expect(new Set(puts.map((p) => p.id))).toEqual(new Set(wires[0]!.chunks.keys()));
    const one = await uploadMessage(over(bulk, client), a, { fresh: true });
    expect(one.wire).toEqual(messageToWire(a).wire);
  });

  it('messageToWire refuses pieceIds that do not fit the message', () => {
    const m = model();
    const ids = messagePieces(m).map((p) => chunkId(p));
    expect(messageToWire(m, { pieceIds: ids }).wire).toEqual(messageToWire(m).wire);
    for (const pieceIds of [ids.slice(1), [...ids, ids[0]!], ids.map(() => 'x')])
      expect(() => messageToWire(m, { pieceIds })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
  });
});
