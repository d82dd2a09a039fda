// The two ChunkTransports against fakes: the chunk RPCs, and the bulk route with its fallback.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { type BulkChunkClient, bulkChunkTransport } from './bulk-client.js';
import { type ChunkRpcClient, rpcChunkTransport } from './chunk-rpc.js';
import { uploadChunks, uploadPieces } from './chunk-transfer.js';
import type { ChunkFeed, ChunkInit } from './chunk-transport.js';
import { chunkId } from './chunks.js';

const chunkOf = (n = 100): ChunkInit => {
  const data = randomBytes(n);
  return { id: chunkId(data), data };
};

/** Chunk RPCs over `held`: records every PushChunks stream and PullChunks request. */
function fakeRpc(held = new Map<string, Uint8Array>()) {
  const streams: string[][] = [];
  const pulls: string[][] = [];
  const asked: string[][] = [];
  const client: ChunkRpcClient = {
    async missingChunks({ chunkIds }) {
      asked.push(chunkIds);
      return { chunkIds: chunkIds.filter((id) => !held.has(id)) };
    },
    async pushChunks(stream) {
      const ids: string[] = [];
      streams.push(ids);
      for await (const c of stream) {
        ids.push(c.id);
        held.set(c.id, c.data);
      }
      return {};
    },
    async *pullChunks({ chunkIds }) {
      pulls.push(chunkIds);
      for (const id of chunkIds) yield { id, data: held.get(id)! };
    },
  };
  return { client, held, streams, pulls, asked };
}

/** A bulk client with no bulk route behind it: every request is answered 404. */
function noRoute() {
  let requests = 0;
  const bulk: BulkChunkClient = {
    supported: true,
    async put() {
      requests++;
      throw new PollenError('ROUTE_NOT_FOUND', 'HTTP 404');
    },
    async get() {
      requests++;
      throw new PollenError('ROUTE_NOT_FOUND', 'HTTP 404');
    },
  };
  return { bulk, requests: () => requests };
}

const feedOf = (chunks: ChunkInit[]): ChunkFeed => {
  let next = 0;
  return async () => chunks[next++];
};

describe('rpcChunkTransport', () => {
  it('opens no PushChunks stream when there is nothing to send, and one for all chunks otherwise', async () => {
    const rpc = fakeRpc();
    const t = rpcChunkTransport(rpc.client);
    await t.push(feedOf([]));
    expect(rpc.streams).toEqual([]);
    const chunks = [chunkOf(), chunkOf(), chunkOf()];
    const sent: string[] = [];
    await t.push(feedOf(chunks), { onSent: (c) => sent.push(c.id) });
    expect(rpc.streams).toEqual([chunks.map((c) => c.id)]);
    expect(sent).toEqual(chunks.map((c) => c.id));
  });

  it('reports a failure of the chunk source as itself, not as the call’s', async () => {
    const rpc = fakeRpc();
    const broken = new PollenError('CHUNK_MISSING', 'gone');
    let calls = 0;
    const feed: ChunkFeed = async () => {
      if (calls++ === 0) return chunkOf();
      throw broken;
    };
    await expect(rpcChunkTransport(rpc.client).push(feed)).rejects.toBe(broken);
  });

  it('asks MissingChunks about fresh pieces too: a held chunk would cross in full', async () => {
    const held = chunkOf();
    const fresh = chunkOf();
    const rpc = fakeRpc(new Map([[held.id, held.data]]));
    const r = await uploadPieces(rpcChunkTransport(rpc.client), [held.data, fresh.data], { fresh: true });
    expect(r).toMatchObject({ ids: [held.id, fresh.id], sent: 1, skipped: 1 });
    expect(rpc.asked.flat()).toEqual([held.id, fresh.id]);
    expect(rpc.streams).toEqual([[fresh.id]]);
  });
});

describe('bulkChunkTransport without a bulk route', () => {
  it('sends every chunk over one PushChunks stream, and later transfers go there at once', async () => {
    const rpc = fakeRpc();
    const { bulk, requests } = noRoute();
    const t = bulkChunkTransport(bulk, rpcChunkTransport(rpc.client));
    expect(t.perChunk).toBe(true);
    const chunks = Array.from({ length: 6 }, () => chunkOf());
    const r = await uploadChunks(t, new Map(chunks.map((c) => [c.id, c.data])));
    expect(r).toMatchObject({ sent: 6, skipped: 0 });
    expect(bulk.supported).toBe(false);
    expect(t.perChunk).toBe(false);
    expect(rpc.streams).toHaveLength(1);
    expect([...rpc.streams[0]!].sort()).toEqual(chunks.map((c) => c.id).sort());
    const tried = requests();
    const more = chunkOf();
    await uploadChunks(t, new Map([[more.id, more.data]]));
    expect(requests()).toBe(tried);
    expect(rpc.streams[1]).toEqual([more.id]);
  });

  it('pulls over PullChunks, each chunk verified', async () => {
    const chunks = [chunkOf(), chunkOf()];
    const rpc = fakeRpc(new Map(chunks.map((c) => [c.id, c.data])));
    const { bulk } = noRoute();
    const t = bulkChunkTransport(bulk, rpcChunkTransport(rpc.client));
    const got: string[] = [];
    for await (const c of t.pull(chunks.map((c) => c.id))) got.push(c.id);
    expect(got).toEqual(chunks.map((c) => c.id));
    expect(rpc.pulls).toEqual([chunks.map((c) => c.id)]);
    expect(bulk.supported).toBe(false);
    // A peer that sends other bytes under an id is caught on this path as well.
    rpc.held.set(chunks[0]!.id, randomBytes(100));
    const lying = async () => {
      for await (const _ of t.pull([chunks[0]!.id]));
    };
    await expect(lying()).rejects.toMatchObject({ code: 'CHUNK_MISMATCH' });
  });
});
