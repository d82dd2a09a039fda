/** Chunk garbage collection keeps what messages and bundles reference, and young chunks. */
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { linkStates } from '../../test/support/link-states.js';
import { instruction, runningRun } from '../../test/support/runs.js';
import { FabSchema } from '../gen/pollen/v1/records_pb.js';
import { chunkId } from '../transport/chunks.js';

describe.each(storeBackends('gc'))('Link.collectGarbage on %s', (backend, makeUrl) => {
  const open = linkStates(backend, makeUrl, { now: Date.now });

  it('removes old unreferenced chunks only', async () => {
    const state = await open.state();
    const { link, chunks, dir } = open.link(state);
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
    await link.fabs.register(
      create(FabSchema, { hash, size: BigInt(bundle!.length), chunkIds: [ids[0]!], name: 'a', version: '1' }),
    );
    const runId = await runningRun(state, 'a');
    await state.activateNode({ nodeId: 'n1', name: 'n1', heartbeatIntervalMs: 10_000 });
    await state.pushInstructions(runId, [instruction('m1', 'n1', { chunkIds: [ids[1]!] })]);

    const r = await link.collectGarbage(60_000);
    expect(r.removed).toBe(1);
    expect(await chunks.missing(ids)).toEqual([ids[2]]);

    // once the run's messages are gone, the message chunk goes too; the bundle's stays
    await state.deleteRunMessages(runId);
    await link.collectGarbage(60_000);
    expect(await chunks.missing(ids)).toEqual([ids[1], ids[2]]);
  });
});
