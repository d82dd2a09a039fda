/**
 * The receiving side of bench/transfer.ts, in its own process (so that sender and receiver each
 * have their own event loop and core, as a SuperNode and a SuperLink do): a real SuperLink
 * (mutual TLS, certificate mode, DiskChunkStore) and a raw `node:tls` receiver with the same
 * certificates, the baseline. IPC from the bench:
 *
 *   { cmd: 'clear', ids }    delete these chunks from the SuperLink's shared store → { ok }
 *   { cmd: 'missing', ids, runId?, nodeId? }
 *                            → { missing: number } (how many of ids the shared store, or the
 *                              run scope of that node, lacks)
 *   { cmd: 'run', nodeId }   → { runId } a new run, running, that sent node `nodeId` one
 *                              instruction (no ServerApp: the bench is its node)
 *   { cmd: 'finish', runId } drop the run's chunks (what a finished run does) → { ok }
 *   { cmd: 'cpu' }           → { cpuMs } (this process's user + system CPU so far)
 *   { cmd: 'stop' }
 *
 * The raw receiver reads a 9-byte header (uint64 length, 1 byte: 1 = hash), then exactly that
 * many bytes, discarding them or SHA-256-hashing them (every 4 MiB, like the chunk ids), and
 * answers with one byte, or the 32-byte digest of the last 4 MiB piece when hashing; the sender's
 * clock stops at that answer.
 *
 * Run by the bench as `node --import tsx bench/transfer-superlink.ts DIR` with DIR/superlink.crt,
 * DIR/superlink.key and DIR/rootCA.pem.
 */
import { createHash, type Hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import pino from 'pino';
import { Message } from '../src/sdk/message.js';
import { RecordDict } from '../src/sdk/records.js';
import { startSuperLink } from '../src/superlink/superlink.js';
import { messageToWire } from '../src/transport/wire.js';

const dir = process.argv[2]!;
/** Behind a TCP proxy (bench/nginx-upload.ts): the addresses whose PROXY header is believed. */
const proxyFrom = process.argv[3];
const material = {
  cert: readFileSync(join(dir, 'superlink.crt'), 'utf8'),
  key: readFileSync(join(dir, 'superlink.key'), 'utf8'),
  ca: readFileSync(join(dir, 'rootCA.pem'), 'utf8'),
};
const superlink = await startSuperLink({
  stateDir: join(dir, 'superlink'),
  fleet: { host: '127.0.0.1', port: 0 },
  control: { host: '127.0.0.1', port: 0 },
  serverAppIo: { host: '127.0.0.1', port: 0 },
  tls: material,
  nodeAuth: false,
  ...(proxyFrom && { proxyProtocol: { from: proxyFrom.split(',') } }),
  log: pino({ level: 'warn' }),
});
const store = superlink.link.chunks;

const PIECE = 4 * 1024 * 1024;
const raw = tls.createServer(
  { ...material, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
  (socket) => {
    let header: Buffer | undefined = Buffer.alloc(0);
    let left = 0;
    let hash: Hash | undefined;
    let inPiece = 0;
    let digest = Buffer.alloc(1);
    const take = (d: Buffer): void => {
      if (left === 0) return;
      const part = d.byteLength > left ? d.subarray(0, left) : d;
      left -= part.byteLength;
      if (hash) {
        // One digest per 4 MiB piece, as the chunk ids are.
        let at = 0;
        while (at < part.byteLength) {
          const n = Math.min(PIECE - inPiece, part.byteLength - at);
          hash.update(part.subarray(at, at + n));
          at += n;
          inPiece += n;
          if (inPiece === PIECE || (left === 0 && at === part.byteLength)) {
            digest = hash.digest();
            hash = createHash('sha256');
            inPiece = 0;
          }
        }
      }
      if (left === 0) socket.end(digest);
    };
    socket.on('data', (d: Buffer) => {
      if (header) {
        header = Buffer.concat([header, d]);
        if (header.byteLength < 9) return;
        left = Number(header.readBigUInt64BE(0));
        if (header[8] === 1) hash = createHash('sha256');
        const rest = header.subarray(9);
        header = undefined;
        take(rest);
      } else take(d);
    });
    socket.on('error', () => {});
  },
);
await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));

process.on('message', (m: { cmd: string; ids?: string[]; runId?: string; nodeId?: string }) => {
  const answer = async (): Promise<object> => {
    if (m.cmd === 'clear') {
      for (const id of m.ids ?? []) await store.delete(id);
      return { ok: true };
    }
    if (m.cmd === 'missing') {
      const where = m.runId ? superlink.link.relay.reader(m.runId, [m.nodeId ?? ''], store) : store;
      return { missing: (await where.missing(m.ids ?? [])).length };
    }
    if (m.cmd === 'run') {
      const run = await superlink.state.createRun({
        fabHash: `sha256:${'0'.repeat(64)}`,
        fabName: 'bench',
        fabVersion: '0',
        runConfig: {},
        federation: 'default', // every node serves it: the bench's node may receive the run's work
        createdBy: 'bench',
      });
      await superlink.state.transitionRun(run.runId, 'starting');
      await superlink.state.transitionRun(run.runId, 'running');
      // Only nodes the run sent work may add chunks to it.
      const { wire } = messageToWire(
        Message.create({
          content: new RecordDict(),
          dstNodeId: m.nodeId ?? '',
          messageType: 'train',
          runId: run.runId,
        }),
      );
      await superlink.link.pushInstructions(run.runId, [wire]);
      return { runId: run.runId };
    }
    if (m.cmd === 'finish') {
      await superlink.link.runFinished(m.runId ?? '');
      return { ok: true };
    }
    if (m.cmd === 'cpu') {
      const c = process.cpuUsage();
      return { cpuMs: (c.user + c.system) / 1000 };
    }
    if (m.cmd === 'stop') {
      raw.close();
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
  controlUrl: superlink.controlUrl,
  rawPort: (raw.address() as AddressInfo).port,
  pid: process.pid,
});
