/**
 * Model transfer benchmark: a 256 MiB model (64 float32 arrays of 4 MiB) from a SuperNode-like
 * client to a real in-process SuperLink over its Fleet API (mutual TLS, chunks stored in the
 * SuperLink's DiskChunkStore), and back (into a MemoryChunkStore), beside raw TLS on the same
 * loopback with the same kind of certificates, measured in the same run:
 *
 *   raw TLS          node:tls, TLS 1.3, 256 MiB in 4 MiB writes, the receiver discards
 *   raw TLS + SHA-256 the same, the receiver hashes every byte (our receiver must verify ids)
 *   Pollen up        messageToWire → uploadChunks over the bulk route (PUT /pollen.v1.chunks/ID)
 *   Pollen down      downloadChunks over the bulk route (GET), each chunk verified
 *   Connect up/down  the same over the PushChunks / PullChunks RPCs (grpc framing), for reference
 *
 *   npm run bench:transfer                   best of 3 of each
 *   npx tsx bench/transfer.ts --mib 64 --reps 2 --json
 *
 * Time = first byte sent → all chunks stored (up) or received and verified (down); the
 * SHA-256 ids of messageToWire are computed before the clock starts (reported apart). Not part
 * of the test suite: the target prints PASS/FAIL but never changes the exit code.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Fleet } from '../src/gen/pollen/v1/fleet_pb.js';
import { initCa, loadCa } from '../src/pki/ca.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { Message } from '../src/sdk/message.js';
import { ArrayRecord, RecordDict } from '../src/sdk/records.js';
import { startSuperLink } from '../src/superlink/superlink.js';
import { downloadChunks, uploadChunks } from '../src/transport/chunk-transfer.js';
import { MemoryChunkStore } from '../src/transport/chunks.js';
import { openChannel } from '../src/transport/rpc-client.js';
import { loadTlsMaterial, type TlsMaterial } from '../src/transport/tls.js';
import { messageToWire } from '../src/transport/wire.js';
import { machineInfo } from './lib/env.js';
import { num, table, times } from './lib/table.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MiB = 1024 * 1024;

const { values: flags } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    reps: { type: 'string', default: '3' },
    'connect-reps': { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log('usage: tsx bench/transfer.ts [--mib 256] [--reps 3] [--connect-reps 1] [--json]');
  process.exit(0);
}
const TOTAL = Number(flags.mib) * MiB;
const REPS = Number(flags.reps);
const CONNECT_REPS = Number(flags['connect-reps']);
const WRITE = 4 * MiB;
const log = (s: string): void => {
  if (!flags.json) console.log(s);
};

// ------------------------------------------------------------------------------ setup
const dir = mkdtempSync(join(tmpdir(), 'pollen-bench-transfer-'));
await initCa({ name: 'bench', dir: join(dir, 'ca') });
const ca = await loadCa(join(dir, 'ca'));
const cert = async (name: string, type: 'server' | 'client', hosts?: string[]): Promise<TlsMaterial> => {
  const r = await createSiteCertificate(ca, {
    name,
    type,
    outDir: join(dir, 'certs', name),
    validityDays: 1,
    hosts,
  });
  return loadTlsMaterial({ cert: r.certPath, key: r.keyPath, ca: r.rootPath });
};
const serverTls = await cert('superlink', 'server', ['127.0.0.1', 'localhost']);
const clientTls = await cert('site-1', 'client');

// One buffer of noise: the raw TLS payload and the model's arrays (distinct chunks).
const payload = Buffer.allocUnsafe(TOTAL);
for (let at = 0; at < TOTAL; at += 64 * MiB) randomFillSync(payload, at, Math.min(64 * MiB, TOTAL - at));

/** Rates (MB/s) of `reps` runs; the best is the highest. */
async function bestOf(reps: number, fn: () => Promise<number>): Promise<number[]> {
  const all: number[] = [];
  for (let i = 0; i < reps; i++) all.push(await fn());
  return all;
}

// ------------------------------------------------------------------------------ raw TLS
async function rawTls(hash: boolean): Promise<number> {
  let resolveDone: (digest: string) => void = () => {};
  const done = new Promise<string>((r) => {
    resolveDone = r;
  });
  const server = tls.createServer(
    {
      cert: serverTls.cert,
      key: serverTls.key,
      ca: serverTls.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    },
    (socket) => {
      let got = 0;
      const h = hash ? createHash('sha256') : undefined;
      socket.on('data', (d: Buffer) => {
        got += d.byteLength;
        h?.update(d);
        if (got >= TOTAL) {
          resolveDone(h ? h.digest('hex') : '');
          socket.end();
        }
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    ca: clientTls.ca,
    cert: clientTls.cert,
    key: clientTls.key,
    servername: 'localhost',
    minVersion: 'TLSv1.3',
  });
  await new Promise<void>((r, j) => {
    socket.once('secureConnect', r);
    socket.once('error', j);
  });
  const t0 = performance.now();
  for (let at = 0; at < TOTAL; at += WRITE) {
    if (!socket.write(payload.subarray(at, at + WRITE))) await new Promise((r) => socket.once('drain', r));
  }
  const digest = await done;
  const seconds = (performance.now() - t0) / 1000;
  if (hash && digest !== createHash('sha256').update(payload).digest('hex'))
    throw new Error('raw TLS: bad hash');
  socket.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return TOTAL / seconds / 1e6;
}

log(`Model transfer over mutual TLS: ${num(TOTAL / MiB)} MiB, best of ${REPS}`);
const raw = await bestOf(REPS, () => rawTls(false));
const rawHash = await bestOf(REPS, () => rawTls(true));

// ------------------------------------------------------------------------------ Pollen
const superlink = await startSuperLink({
  stateDir: join(dir, 'superlink'),
  fleet: { host: '127.0.0.1', port: 0 },
  control: { host: '127.0.0.1', port: 0 },
  serverAppIo: { host: '127.0.0.1', port: 0 },
  tls: serverTls,
  nodeAuth: false,
  log: pino({ level: 'warn' }),
});
const f32 = new Float32Array(payload.buffer, payload.byteOffset, TOTAL / 4);
const perArray = WRITE / 4;
const layers: Record<string, Float32Array> = {};
for (let i = 0; i < TOTAL / WRITE; i++) layers[`layer.${i}`] = f32.subarray(i * perArray, (i + 1) * perArray);
const message = Message.create({
  content: new RecordDict({ model: ArrayRecord.fromArrays(layers) }),
  dstNodeId: '0',
  messageType: 'train',
  runId: 'bench',
});
let t = performance.now();
const { chunks } = messageToWire(message);
const toWireMs = performance.now() - t;
const ids = [...chunks.keys()];
if (ids.length !== TOTAL / WRITE)
  throw new Error(`expected ${TOTAL / WRITE} distinct chunks, got ${ids.length}`);

const channel = openChannel({ baseUrl: superlink.fleetUrl, tls: clientTls });
const fleet = channel.client(Fleet);
const store = superlink.link.chunks;

async function up(bulk: boolean): Promise<number> {
  for (const id of ids) await store.delete(id);
  const t0 = performance.now();
  const r = await uploadChunks(fleet, chunks, bulk ? {} : { bulk: false });
  const seconds = (performance.now() - t0) / 1000;
  if (r.sent !== ids.length || (await store.missing(ids)).length !== 0) throw new Error('upload incomplete');
  return TOTAL / seconds / 1e6;
}

async function down(bulk: boolean): Promise<number> {
  const into = new MemoryChunkStore();
  const t0 = performance.now();
  const r = await downloadChunks(fleet, ids, into, bulk ? {} : { bulk: false });
  const seconds = (performance.now() - t0) / 1000;
  if (r.received !== ids.length) throw new Error('download incomplete');
  // Spot-check bytes (every chunk was already verified against its SHA-256 id).
  const first = await into.get(ids[0]!);
  if (!first || Buffer.compare(Buffer.from(first), Buffer.from(chunks.get(ids[0]!)!)) !== 0)
    throw new Error('download mismatch');
  return TOTAL / seconds / 1e6;
}

t = performance.now();
await up(true); // warm-up: connection, JIT, folders
await down(true);
const warmMs = performance.now() - t;
const pollenUp = await bestOf(REPS, () => up(true));
const pollenDown = await bestOf(REPS, () => down(true));
const connectUp = CONNECT_REPS > 0 ? await bestOf(CONNECT_REPS, () => up(false)) : undefined;
const connectDown = CONNECT_REPS > 0 ? await bestOf(CONNECT_REPS, () => down(false)) : undefined;
// The raw baseline again at the end, so a machine that got busier in between shows.
const rawAfter = await bestOf(REPS, () => rawTls(false));

channel.close();
await superlink.close();
rmSync(dir, { recursive: true, force: true });

// ------------------------------------------------------------------------------ report
const rows: [string, number[] | undefined][] = [
  ['raw TLS 1.3 (node:tls), receiver discards', raw],
  ['raw TLS 1.3, receiver discards (again, at the end)', rawAfter],
  ['raw TLS 1.3, receiver SHA-256', rawHash],
  ['Pollen up: uploadChunks, bulk PUT → DiskChunkStore', pollenUp],
  ['Pollen down: downloadChunks, bulk GET → MemoryChunkStore', pollenDown],
  ['Connect PushChunks (gRPC) → DiskChunkStore', connectUp],
  ['Connect PullChunks (gRPC) → MemoryChunkStore', connectDown],
];
const bestRate = (r: number[] | undefined): number | undefined => (r ? Math.max(...r) : undefined);
const rawRate = Math.max(bestRate(raw)!, bestRate(rawAfter)!);
const rawHashRate = bestRate(rawHash)!;
log(
  table(
    ['path', 'MB/s (best)', 'runs', '÷ raw TLS', '÷ raw+SHA'],
    rows.map(([name, r]) => [
      name,
      num(bestRate(r)),
      r ? r.map((x) => num(x)).join(' / ') : '–',
      times((bestRate(r) ?? Number.NaN) / rawRate),
      times((bestRate(r) ?? Number.NaN) / rawHashRate),
    ]),
  ),
);
const upRatio = bestRate(pollenUp)! / rawRate;
const downRatio = bestRate(pollenDown)! / rawRate;
log('');
log(`messageToWire (SHA-256 ids of ${num(TOTAL / MiB)} MiB, before the clock): ${num(toWireMs)} ms`);
log(`warm-up (one upload + one download): ${num(warmMs)} ms; raw baseline used: ${num(rawRate)} MB/s`);
log(`target Pollen up ≥ 0.60× raw TLS: ${upRatio >= 0.6 ? 'PASS' : 'FAIL'} (${times(upRatio)})`);
log(`target Pollen down ≥ 0.60× raw TLS: ${downRatio >= 0.6 ? 'PASS' : 'FAIL'} (${times(downRatio)})`);

const doc = {
  bench: 'transfer',
  machine: machineInfo(),
  config: { bytes: TOTAL, chunkBytes: WRITE, reps: REPS, connectReps: CONNECT_REPS },
  mbps: Object.fromEntries(rows.map(([name, r]) => [name, r ?? null])),
  best: Object.fromEntries(rows.map(([name, r]) => [name, bestRate(r) ?? null])),
  ratios: { upToRaw: upRatio, downToRaw: downRatio, upToRawSha: bestRate(pollenUp)! / rawHashRate },
  toWireMs,
};
mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'out', 'transfer.json'), `${JSON.stringify(doc, null, 2)}\n`);
if (flags.json) console.log(JSON.stringify(doc, null, 2));
