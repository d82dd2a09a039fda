/** Chunk garbage collection keeps what messages and bundles reference, and young chunks. */
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { FabSchema } from '../gen/pollen/v1/records_pb.js';
import { chunkId, DiskChunkStore } from '../transport/chunks.js';
import { Link } from './link.js';
import { RelayChunks } from './relay-chunks.js';
import { openLinkState } from './state.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-gc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Link.collectGarbage', () => {
  it('removes old unreferenced chunks only', async () => {
    const state = await openLinkState({ url: join(dir, 'link.db') });
    const chunks = new DiskChunkStore(join(dir, 'chunks'));
    const relay = new RelayChunks({ dir: join(dir, 'run-chunks') });
    const link = new Link({
      state,
      chunks,
      relay,
      stateDir: dir,
      log: pino({ level: 'silent' }),
      nodeAuth: false,
    });
    const data = (s: string) => new TextEncoder().encode(s);
    const [bundle, message, orphan, young] = ['bundle', 'message', 'orphan', 'young'].map(
      data,
    ) as Uint8Array[];
    const ids = [bundle, message, orphan, young].map((d) => chunkId(d!));
    for (const [i, d] of [bundle, message, orphan, young].entries()) await chunks.put(ids[i]!, d!);
    const old = new Date(Date.now() - 3_600_000);
    for (const id of ids.slice(0, 3)) utimesSync(join(dir, 'chunks', id.slice(0, 2), id), old, old);

    // a registered bundle references its chunk; a queued instruction references another
    const hash = `sha256:${ids[0]}`;
    await link.registerFab(
      create(FabSchema, { hash, size: BigInt(bundle!.length), chunkIds: [ids[0]!], name: 'a', version: '1' }),
    );
    const run = await state.createRun({
      fabHash: hash,
      fabName: 'a',
      fabVersion: '1',
      runConfig: {},
      federation: 'f',
      createdBy: 't',
    });
    await state.transitionRun(run.runId, 'starting');
    await state.transitionRun(run.runId, 'running');
    await state.activateNode({ nodeId: 'n1', name: 'n1', heartbeatIntervalMs: 10_000 });
    await state.pushInstructions(run.runId, [
      {
        messageId: 'm1',
        dstNodeId: 'n1',
        groupId: '',
        messageType: 'train',
        createdAt: Date.now(),
        ttlMs: 60_000,
        payload: new Uint8Array(4),
        chunkIds: [ids[1]!],
      },
    ]);

    const r = await link.collectGarbage(60_000);
    expect(r.removed).toBe(1);
    expect(await chunks.missing(ids)).toEqual([ids[2]]);

    // once the run's messages are gone, the message chunk goes too; the bundle's stays
    await state.deleteRunMessages(run.runId);
    await link.collectGarbage(60_000);
    expect(await chunks.missing(ids)).toEqual([ids[1], ids[2]]);
    await state.close();
  });
});
