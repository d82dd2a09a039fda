/**
 * A site decides what code runs on its data: a SuperNode with --trusted-app runs only those
 * bundle hashes and answers any other run with APP_NOT_TRUSTED (the run goes on with the others).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/apps/build.js';
import { Control } from '../src/gen/pollen/v1/control_pb.js';
import { initCa, loadCa } from '../src/pki/ca.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { type SuperLink, startSuperLink } from '../src/superlink/superlink.js';
import { type SuperNode, startSuperNode } from '../src/supernode/supernode.js';
import { uploadChunks } from '../src/transport/chunk-transfer.js';
import { chunkId } from '../src/transport/chunks.js';
import { openChannel, type RpcChannel } from '../src/transport/rpc-client.js';
import { loadTlsMaterial, type TlsMaterial } from '../src/transport/tls.js';
import { configToWire } from '../src/transport/wire.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-trusted-'));
const log = pino({ level: 'silent' });
let link: SuperLink;
const nodes: SuperNode[] = [];
let channel: RpcChannel;
let app: { hash: string; bytes: Buffer; name: string; version: string };

async function cert(
  ca: Awaited<ReturnType<typeof loadCa>>,
  name: string,
  type: 'server' | 'client' | 'admin',
): Promise<TlsMaterial> {
  const r = await createSiteCertificate(ca, {
    name,
    type,
    outDir: join(dir, 'certs', name),
    validityDays: 1,
    hosts: type === 'server' ? ['127.0.0.1', 'localhost'] : undefined,
  });
  return loadTlsMaterial({ cert: r.certPath, key: r.keyPath, ca: r.rootPath });
}

beforeAll(async () => {
  await initCa({ name: 'trusted', dir: join(dir, 'ca'), keyType: 'ec-p256' });
  const ca = await loadCa(join(dir, 'ca'));
  const any = { host: '127.0.0.1', port: 0 };
  link = await startSuperLink({
    stateDir: join(dir, 'sl'),
    fleet: any,
    control: any,
    serverAppIo: any,
    tls: await cert(ca, 'superlink', 'server'),
    nodeAuth: false,
    log,
  });
  const built = await buildApp(join(import.meta.dirname, 'fixtures', 'apps', 'tiny'), {
    outDir: join(dir, 'build'),
  });
  app = {
    hash: built.hash,
    bytes: readFileSync(built.path),
    name: built.manifest.name,
    version: built.manifest.version,
  };
  const other = `sha256:${'0'.repeat(64)}`;
  for (const [i, trustedApps] of [[app.hash], [other]].entries())
    nodes.push(
      await startSuperNode({
        superlink: link.fleetUrl,
        tls: await cert(ca, `site-${i}`, 'client'),
        name: `site-${i}`,
        workDir: join(dir, `n${i}`),
        nodeConfig: { 'partition-id': i },
        trustedApps,
        log,
        pollIntervalMs: 100,
      }),
    );
  await Promise.all(nodes.map((n) => n.ready));
  channel = openChannel({ baseUrl: link.controlUrl, tls: await cert(ca, 'admin', 'admin') });
}, 60_000);

afterAll(async () => {
  channel?.close();
  for (const n of nodes) await n.close();
  await link?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('--trusted-app', () => {
  it('runs only the listed bundle; other sites still take part', async () => {
    const control = channel.client(Control);
    const id = chunkId(app.bytes);
    await uploadChunks(channel.chunks(control), new Map([[id, app.bytes]]));
    const { runId } = await control.startRun({
      fab: {
        hash: app.hash,
        size: BigInt(app.bytes.length),
        chunkIds: [id],
        name: app.name,
        version: app.version,
      },
      runConfig: configToWire({ 'num-rounds': 1, 'min-nodes': 1 }),
    });
    const lines: string[] = [];
    let final: string | undefined;
    for await (const m of control.streamLogs({ runId, follow: true })) {
      lines.push(...m.lines.map((l) => l.text));
      if (m.run) final = `${m.run.status}:${m.run.subStatus}`;
    }
    expect(final, lines.join('\n')).toBe('finished:completed');
    expect(lines.join('\n')).toContain(`node ${nodes[1]!.nodeId} failed: APP_NOT_TRUSTED`);
    const { rounds } = await control.getRunDetails({ runId });
    expect(rounds[0]?.nodeIds).toEqual([nodes[0]!.nodeId]);
    // the trusting site's weights: partition 0 adds 1
    expect(rounds[0]?.metrics.w0).toBe(1);
  }, 60_000);
});
