/**
 * A site decides what code runs on its data: a SuperNode with --trusted-app runs only those
 * bundle hashes and answers any other run with APP_NOT_TRUSTED (the run goes on with the others).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import 'reflect-metadata';
import type { Client } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/apps/build.js';
import type { Control } from '../src/gen/pollen/v1/control_pb.js';
import { type SuperNode, startSuperNode } from '../src/supernode/supernode.js';
import { uploadChunks } from '../src/transport/chunk-transfer.js';
import type { ChunkTransport } from '../src/transport/chunk-transport.js';
import { chunkId } from '../src/transport/chunks.js';
import { configToWire } from '../src/transport/wire.js';
import { type InProcessLink, startInProcessLink } from './support/inproc.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-trusted-'));
const log = pino({ level: 'silent' });
let l: InProcessLink;
const nodes: SuperNode[] = [];
let admin: { control: Client<typeof Control>; chunks: ChunkTransport };
let app: { hash: string; bytes: Buffer; name: string; version: string };

beforeAll(async () => {
  l = await startInProcessLink('pollen-trusted-link-');
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
        superlink: l.superlink.fleetUrl,
        tls: await l.tls(`site-${i}`),
        name: `site-${i}`,
        workDir: join(dir, `n${i}`),
        nodeConfig: { 'partition-id': i },
        trustedApps,
        log,
        pollIntervalMs: 100,
      }),
    );
  await Promise.all(nodes.map((n) => n.ready));
  admin = await l.admin();
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.close();
  await l?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('--trusted-app', () => {
  it('runs only the listed bundle; other sites still take part', async () => {
    const { control } = admin;
    const id = chunkId(app.bytes);
    await uploadChunks(admin.chunks, new Map([[id, app.bytes]]));
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
