// A 1 GiB model goes client → server (DiskChunkStore) → client over gRPC on HTTP/2 with TLS.
// The server runs in a child process so its memory can be measured on its own: it must stay
// bounded (O(chunk) per stream), never near the size of the model.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet } from '../src/gen/pollen/v1/fleet_pb.js';
import type * as pb from '../src/gen/pollen/v1/records_pb.js';
import { Message } from '../src/sdk/message.js';
import { ArrayRecord, RecordDict } from '../src/sdk/records.js';
import { rpcChunkTransport } from '../src/transport/chunk-rpc.js';
import { downloadChunks, uploadChunks } from '../src/transport/chunk-transfer.js';
import { CHUNK_SIZE, chunkId } from '../src/transport/chunks.js';
import { WideWindowSessionManager } from '../src/transport/rpc-client.js';
import { chunkIdsOf, messageToWire } from '../src/transport/wire.js';
import { selfSigned } from './support/fixtures.js';

const MiB = 1024 * 1024;
const ARRAYS = 64;
const ARRAY_BYTES = 16 * MiB; // 64 × 16 MiB = 1 GiB, 4 chunks per array
const root = fileURLToPath(new URL('..', import.meta.url));
const src = (path: string): string => JSON.stringify(join(root, 'src', path));

// The server, as plain ESM run by `node --import tsx` from the repository root (so that bare
// imports resolve there). It reports its memory peaks when asked.
const SERVER = `
import * as http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { connectNodeAdapter } from '@connectrpc/connect-node';
const { Fleet } = await import(${src('gen/pollen/v1/fleet_pb.ts')});
const { DiskChunkStore, CHUNK_SIZE } = await import(${src('transport/chunks.ts')});
const t = await import(${src('transport/chunk-rpc.ts')});
const w = await import(${src('transport/rpc-server.ts')});
const [dir] = process.argv.slice(1);
const store = new DiskChunkStore(dir + '/store');
const server = http2.createSecureServer(
  { key: readFileSync(dir + '/key.pem'), cert: readFileSync(dir + '/cert.pem'), settings: w.HTTP2_SETTINGS },
  connectNodeAdapter({
    routes: (router) => router.service(Fleet, {
      missingChunks: (req) => t.serveMissingChunks(store, req),
      pushChunks: (s) => t.servePushChunks(store, s, { maxChunkBytes: CHUNK_SIZE }),
      pullChunks: (req) => t.servePullChunks(store, req),
    }),
  }),
);
w.widenServerWindows(server);
const mem = () => process.memoryUsage();
const baseline = mem();
const peak = { ...baseline };
setInterval(() => {
  const m = mem();
  for (const k of Object.keys(peak)) peak[k] = Math.max(peak[k], m[k]);
}, 5).unref();
process.on('message', (msg) => {
  if (msg === 'report') process.send({ baseline, peak, maxRssKiB: process.resourceUsage().maxRSS, stats: null });
  if (msg === 'stop') server.close(() => process.exit(0));
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
`;

interface MemoryReport {
  baseline: NodeJS.MemoryUsage;
  peak: NodeJS.MemoryUsage;
  maxRssKiB: number;
}

let dir: string;
let child: ChildProcess;
let port: number;

function ask<T>(msg: string): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as T));
    child.send(msg);
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-1gib-'));
  selfSigned(join(dir, 'key.pem'), join(dir, 'cert.pem'), '/CN=localhost', 1, [
    'subjectAltName=IP:127.0.0.1',
  ]);
  child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SERVER, dir], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}, 60_000);

afterAll(async () => {
  if (child?.connected) {
    await new Promise((resolve) => {
      child.once('exit', resolve);
      child.send('stop');
    });
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A cheap, position-dependent pattern: every 4 MiB chunk differs from every other. */
function pattern(array: number, index: number): number {
  return (Math.imul(array, 0x9e3779b9) ^ index) >>> 0;
}

describe('1 GiB model over a real gRPC connection', () => {
  it('uploads once, downloads into preallocated arrays, and the server memory stays bounded', async () => {
    const words = ARRAY_BYTES / 4;
    const arrays: Record<string, Float32Array> = {};
    for (let a = 0; a < ARRAYS; a++) {
      const data = new Float32Array(words);
      const u32 = new Uint32Array(data.buffer);
      for (let i = 0; i < words; i++) u32[i] = pattern(a, i);
      arrays[`layer${a}`] = data;
    }
    const message = Message.create({
      content: new RecordDict({ model: ArrayRecord.fromArrays(arrays) }),
      dstNodeId: '1',
      messageType: 'train',
    });
    let t = performance.now();
    const { wire, chunks } = messageToWire(message);
    const hashMs = performance.now() - t;
    const ids = chunkIdsOf(wire);
    expect(ids).toHaveLength(ARRAYS * (ARRAY_BYTES / CHUNK_SIZE));

    const baseUrl = `https://127.0.0.1:${port}`;
    const sessions = new WideWindowSessionManager(baseUrl, undefined, {
      ca: readFileSync(join(dir, 'cert.pem')),
    });
    const rpc = rpcChunkTransport(
      createClient(Fleet, createGrpcTransport({ baseUrl, sessionManager: sessions, acceptCompression: [] })),
    );
    try {
      t = performance.now();
      const up = await uploadChunks(rpc, chunks);
      const upMs = performance.now() - t;
      expect(up).toEqual({ sent: ids.length, bytes: ARRAYS * ARRAY_BYTES, skipped: 0 });
      // Sent once: a second upload (the same model to another node) moves nothing.
      expect((await uploadChunks(rpc, chunks)).sent).toBe(0);

      // Preallocate the receiving arrays from the wire header, fill them as chunks stream in.
      const wireArrays = ((wire.body.value as pb.RecordDict).records[0]!.record.value as pb.ArrayRecord)
        .arrays;
      const received = wireArrays.map((a) => new Float32Array(Number(a.nbytes) / 4));
      const places = new Map<string, { bytes: Uint8Array; offset: number }[]>();
      wireArrays.forEach((a, i) => {
        const bytes = new Uint8Array(received[i]!.buffer);
        a.chunkIds.forEach((id, k) => {
          places.set(id, [...(places.get(id) ?? []), { bytes, offset: k * CHUNK_SIZE }]);
        });
      });
      t = performance.now();
      const down = await downloadChunks(rpc, ids, (id, data) => {
        for (const p of places.get(id)!) p.bytes.set(data, p.offset);
      });
      const downMs = performance.now() - t;
      expect(down.received).toBe(ids.length);
      expect(down.bytes).toBe(ARRAYS * ARRAY_BYTES);

      // Per-chunk hashes of what arrived, and sampled values against the pattern.
      wireArrays.forEach((a, i) => {
        const bytes = new Uint8Array(received[i]!.buffer);
        a.chunkIds.forEach((id, k) => {
          expect(chunkId(bytes.subarray(k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE))).toBe(id);
        });
        const u32 = new Uint32Array(received[i]!.buffer);
        for (const at of [0, 1, words / 2, words - 1, (i * 7919) % words])
          expect(u32[at]).toBe(pattern(i, at));
      });

      const report = await ask<MemoryReport>('report');
      const growth = (k: keyof NodeJS.MemoryUsage) => (report.peak[k] - report.baseline[k]) / MiB;
      const mbps = (ms: number) => ((ARRAYS * ARRAY_BYTES) / 1e6 / (ms / 1000)).toFixed(0);
      console.log(
        `1 GiB: hash ${hashMs.toFixed(0)} ms; upload ${upMs.toFixed(0)} ms (${mbps(upMs)} MB/s); ` +
          `download ${downMs.toFixed(0)} ms (${mbps(downMs)} MB/s); server peak growth: ` +
          `arrayBuffers ${growth('arrayBuffers').toFixed(0)} MiB, external ${growth('external').toFixed(0)} MiB, ` +
          `heapUsed ${growth('heapUsed').toFixed(0)} MiB, rss ${growth('rss').toFixed(0)} MiB ` +
          `(max RSS ${(report.maxRssKiB / 1024).toFixed(0)} MiB)`,
      );
      expect(growth('arrayBuffers')).toBeLessThan(256);
      expect(growth('external')).toBeLessThan(256);
      expect(growth('heapUsed')).toBeLessThan(256);
      expect(report.maxRssKiB / 1024).toBeLessThan(512);
    } finally {
      sessions.abort();
    }
  }, 120_000);
});
