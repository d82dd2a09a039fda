/**
 * A 256 MiB model upload through nginx's TLS passthrough beside the same upload straight to the
 * SuperLink, in one run, alternating: the path a SuperNode's reply takes behind
 * `pollen deploy nginx` (stream, ssl_preread, PROXY protocol) against no proxy at all.
 *
 * The receiver is bench/transfer-superlink.ts (a real SuperLink in its own process, mutual TLS),
 * started with --proxy-protocol-from 127.0.0.3; nginx (Debian's, the generated configuration,
 * `proxy_bind 127.0.0.3`) runs under a temporary prefix on free ports of 127.0.0.1. Each upload
 * is what a SuperNode does with a reply (bench/transfer.ts "Pollen up"): uploadChunks of 64
 * chunks of 4 MiB into a run's scope over the bulk route, timed from MissingChunks to the last
 * chunk acknowledged, then checked held.
 *
 *   npx tsx bench/nginx-upload.ts               3 alternations of each path
 *   npx tsx bench/nginx-upload.ts --reps 5 --mib 128 --json
 *
 * Target: through nginx at least 0.9× of direct (the median of the per-round ratios). Prints
 * PASS/FAIL but never changes the exit code; not part of the test suite.
 */
import { randomFillSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Fleet } from '../src/gen/pollen/v1/fleet_pb.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { Message } from '../src/sdk/message.js';
import { ArrayRecord, RecordDict } from '../src/sdk/records.js';
import { uploadChunks } from '../src/transport/chunk-transfer.js';
import { openChannel, type RpcChannel } from '../src/transport/rpc-client.js';
import { loadTlsMaterial } from '../src/transport/tls.js';
import { messageToWire } from '../src/transport/wire.js';
import { startNginx } from '../test/support/nginx.js';
import { machineInfo } from './lib/env.js';
import { benchPki } from './lib/pki.js';
import { startReceiver } from './lib/receiver.js';
import { num, table, times } from './lib/table.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MiB = 1024 * 1024;
const PROXY_SOURCE = '127.0.0.3';
const TARGET = 0.9;

const { values: flags } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    reps: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const TOTAL = Number(flags.mib) * MiB;
const REPS = Number(flags.reps);
const log = (s: string): void => {
  if (!flags.json) console.log(s);
};

const { dir, ca } = await benchPki('pollen-bench-nginx-', { name: 'bench', hosts: ['127.0.0.1'] });
const site = await createSiteCertificate(ca, {
  name: 'site-1',
  type: 'client',
  outDir: join(dir, 'site-1'),
  validityDays: 1,
});
const clientTls = loadTlsMaterial({ cert: site.certPath, key: site.keyPath, ca: site.rootPath });

const { child, ready, ask } = await startReceiver<{ fleetUrl: string; controlUrl: string }>(
  ['--import', 'tsx', join(ROOT, 'bench', 'transfer-superlink.ts'), dir, PROXY_SOURCE],
  ROOT,
);
const local = (url: string) => ({ host: '127.0.0.1', port: Number(new URL(url).port) });
const nginx = await startNginx(
  join(dir, 'nginx'),
  { fleet: local(ready.fleetUrl), certService: local(ready.fleetUrl), control: local(ready.controlUrl) },
  { proxyBind: PROXY_SOURCE },
);

// The model: 64 float32 arrays of 4 MiB of noise (distinct chunks), named once, as a SuperNode's
// ClientApp names them before the node forwards the reply.
const payload = Buffer.allocUnsafe(TOTAL);
for (let at = 0; at < TOTAL; at += 64 * MiB) randomFillSync(payload, at, Math.min(64 * MiB, TOTAL - at));
const f32 = new Float32Array(payload.buffer, payload.byteOffset, TOTAL / 4);
const perArray = MiB;
const layers: Record<string, Float32Array> = {};
for (let i = 0; i < TOTAL / (4 * MiB); i++)
  layers[`layer.${i}`] = f32.subarray(i * perArray, (i + 1) * perArray);
const { chunks } = messageToWire(
  Message.create({
    content: new RecordDict({ model: ArrayRecord.fromArrays(layers) }),
    dstNodeId: '0',
    messageType: 'train',
    runId: 'bench',
  }),
);
const ids = [...chunks.keys()];

interface Path {
  name: string;
  channel: RpcChannel;
  mbps: number[];
}
const paths: Path[] = [
  {
    name: 'direct to the SuperLink',
    channel: openChannel({ baseUrl: ready.fleetUrl, tls: clientTls }),
    mbps: [],
  },
  {
    name: 'through nginx (stream passthrough + PROXY protocol)',
    channel: openChannel({ baseUrl: `https://127.0.0.1:${nginx.ports.fleet}`, tls: clientTls }),
    mbps: [],
  },
];
const { nodeId } = await paths[0]!.channel
  .client(Fleet)
  .activateNode({ heartbeatIntervalMs: 60_000, name: 'site-1' });

async function upload(path: Path): Promise<void> {
  const fleet = path.channel.client(Fleet);
  await ask({ cmd: 'clear', ids });
  const { runId } = await ask<{ runId: string }>({ cmd: 'run', nodeId });
  const t0 = performance.now();
  const { sent } = await uploadChunks(path.channel.chunks(fleet), chunks, { scope: { runId } });
  const ms = performance.now() - t0;
  if (sent !== ids.length) throw new Error(`${path.name}: upload incomplete`);
  if ((await ask<{ missing: number }>({ cmd: 'missing', ids, runId, nodeId })).missing !== 0)
    throw new Error(`${path.name}: chunks missing at the SuperLink`);
  await ask({ cmd: 'finish', runId });
  path.mbps.push(TOTAL / (ms / 1000) / 1e6);
}

const machine = machineInfo();
log(
  `${machine.cpus} × ${machine.cpuModel}, load ${machine.loadAverage1m}, Node ${machine.node}, commit ${machine.commit}`,
);
log(`${flags.mib} MiB per upload, ${REPS} alternations (direct, then through nginx)`);
try {
  // One warm-up each: connections, TLS sessions and nginx's workers up.
  for (const p of paths) {
    await upload(p);
    p.mbps.length = 0;
  }
  for (let i = 0; i < REPS; i++) for (const p of paths) await upload(p);
} finally {
  for (const p of paths) p.channel.close();
  await nginx.stop();
  child.kill();
  rmSync(dir, { recursive: true, force: true });
}

const [direct, proxied] = paths as [Path, Path];
const ratios = proxied.mbps.map((m, i) => m / direct.mbps[i]!);
const median = [...ratios].sort((a, b) => a - b)[Math.floor(ratios.length / 2)]!;
const pass = median >= TARGET;
if (flags.json)
  console.log(
    JSON.stringify({
      machine,
      mib: Number(flags.mib),
      reps: REPS,
      direct: direct.mbps,
      nginx: proxied.mbps,
      ratios,
      median,
      target: TARGET,
      pass,
    }),
  );
else {
  log(
    table(
      ['path', 'MB/s per round', 'best MB/s'],
      paths.map((p) => [p.name, p.mbps.map((m) => num(m, 0)).join(' / '), num(Math.max(...p.mbps), 0)]),
    ),
  );
  log(`nginx ÷ direct per round: ${ratios.map((r) => times(r)).join(' / ')}; median ${times(median)}`);
  log(`target ≥ ${TARGET}× of direct: ${pass ? 'PASS' : 'FAIL'}`);
}
