/**
 * The SuperLink side of bench/scale.ts, in its own process so that its memory is its own: starts
 * a SuperLink (mutual TLS, certificate mode) and answers IPC messages from the bench:
 *
 *   { cmd: 'stats' }              → { online, rssKiB, heapUsed, cpuMs }
 *   { cmd: 'round', floats, ttl } → one FedAvg-like round driven straight on the Link: a run, one
 *                                   instruction per online node (the same model), every reply
 *                                   awaited → { roundMs, pushMs, replies, errors }
 *   { cmd: 'stop' }
 *
 * Run by the bench as `node --import tsx bench/scale-superlink.ts DIR [NAME] [--metrics]` with the
 * certificate paths in DIR/superlink.{crt,key} and DIR/rootCA.pem, its state in DIR/NAME (default
 * `superlink`); `--metrics` serves `/metrics` on a free loopback port (off otherwise, as
 * `--metrics-address off`), named in the first message (`opsUrl`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { Message } from '../src/sdk/message.js';
import { ArrayRecord, RecordDict } from '../src/sdk/records.js';
import { startSuperLink } from '../src/superlink/superlink.js';
import { messageToWire } from '../src/transport/wire.js';

const dir = process.argv[2]!;
const name = process.argv[3] && !process.argv[3].startsWith('--') ? process.argv[3] : 'superlink';
const metrics = process.argv.includes('--metrics');
const superlink = await startSuperLink({
  stateDir: join(dir, name),
  ...(metrics && { metrics: { host: '127.0.0.1', port: 0 } }),
  fleet: { host: '127.0.0.1', port: 0 },
  control: { host: '127.0.0.1', port: 0 },
  serverAppIo: { host: '127.0.0.1', port: 0 },
  tls: {
    cert: readFileSync(join(dir, 'superlink.crt'), 'utf8'),
    key: readFileSync(join(dir, 'superlink.key'), 'utf8'),
    ca: readFileSync(join(dir, 'rootCA.pem'), 'utf8'),
  },
  nodeAuth: false,
  log: pino({ level: 'warn' }),
});
const { link, state } = superlink;

function rssKiB(): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : Math.round(process.memoryUsage().rss / 1024);
}

function stats() {
  const cpu = process.cpuUsage();
  return {
    rssKiB: rssKiB(),
    heapUsed: process.memoryUsage().heapUsed,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

async function round(floats: number, ttlSeconds: number) {
  const nodeIds = await state.onlineNodeIds();
  const run = await state.createRun({
    fabHash: `sha256:${'0'.repeat(64)}`,
    fabName: 'scale-bench',
    fabVersion: '1.0.0',
    runConfig: {},
    federation: 'default',
    createdBy: 'bench',
  });
  await state.transitionRun(run.runId, 'starting');
  await state.transitionRun(run.runId, 'running');
  const model = new Float32Array(floats);
  for (let i = 0; i < floats; i++) model[i] = Math.sin(i);
  const content = new RecordDict({ model: ArrayRecord.fromArrays({ w: model }) });
  const t0 = performance.now();
  const wires = nodeIds.map(
    (dstNodeId) =>
      messageToWire(
        Message.create({ content, dstNodeId, messageType: 'train', runId: run.runId, ttlSeconds }),
      ).wire,
  );
  const ids = await link.pushInstructions(run.runId, wires);
  const pushMs = performance.now() - t0;
  const waiting = new Set(ids);
  let replies = 0;
  let errors = 0;
  const firstErrors: string[] = [];
  const deadline = Date.now() + ttlSeconds * 1000;
  while (waiting.size > 0 && Date.now() < deadline) {
    for (const r of await link.pullReplies(run.runId, [...waiting], 5_000)) {
      waiting.delete(r.metadata!.replyToMessageId);
      if (r.body.case === 'error') {
        errors++;
        if (firstErrors.length < 3) firstErrors.push(`${r.body.value.code}: ${r.body.value.reason}`);
      } else replies++;
    }
  }
  const roundMs = performance.now() - t0;
  await state.transitionRun(run.runId, 'finished', { subStatus: 'completed' });
  return { nodes: nodeIds.length, roundMs, pushMs, replies, errors, missing: waiting.size, firstErrors };
}

process.on('message', (m: { cmd: string; floats?: number; ttl?: number }) => {
  const answer = async () => {
    if (m.cmd === 'stats') return { ...stats(), online: (await state.onlineNodeIds()).length };
    if (m.cmd === 'round') return round(m.floats ?? 10_000, m.ttl ?? 60);
    if (m.cmd === 'stop') {
      await superlink.close();
      process.exit(0);
    }
    return { error: `unknown command ${m.cmd}` };
  };
  answer().then(
    (r) => process.send!(r),
    (e) => process.send!({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
  );
});
process.send!({
  ready: true,
  fleetUrl: superlink.fleetUrl,
  opsUrl: superlink.opsUrl ?? null,
  pid: process.pid,
  ...stats(),
});
