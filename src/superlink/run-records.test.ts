/**
 * Run records alone (over the run store), on both backends: log lines in order, paged by seq, and
 * round metrics merged per round.
 */
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { expectCode, linkStates, T0 } from '../../test/support/link-states.js';
import { runningRun } from '../../test/support/runs.js';
import { RunRecords } from './run-records.js';
import { RunStore } from './run-store.js';

describe.each(storeBackends('records'))('run records on %s', (backend, makeUrl) => {
  const { now, store } = linkStates(backend, makeUrl);
  async function fresh() {
    const { db } = await store();
    const runs = new RunStore(db, backend === 'postgres', now);
    return { records: new RunRecords(db, backend === 'postgres', runs, now), runId: await runningRun(runs) };
  }

  it('appends logs in order and pages them by seq', async () => {
    const { records: s, runId } = await fresh();
    const [a, b] = await Promise.all([
      s.appendLogs(runId, [
        { stream: 'stdout', text: 'one' },
        { stream: 'stderr', text: 'two' },
      ]),
      s.appendLogs(runId, [{ stream: 'system', text: 'three', at: 5 }]),
    ]);
    expect([a, b]).toEqual([2, 3]);
    expect(await s.readLogs(runId)).toEqual([
      { seq: 1, at: T0, stream: 'stdout', text: 'one' },
      { seq: 2, at: T0, stream: 'stderr', text: 'two' },
      { seq: 3, at: 5, stream: 'system', text: 'three' },
    ]);
    expect((await s.readLogs(runId, { afterSeq: 1, limit: 1 })).map((l) => l.text)).toEqual(['two']);
    await expectCode(s.appendLogs('nope', [{ stream: 'stdout', text: 'x' }]), 'RUN_NOT_FOUND');
    await expectCode(
      async () => s.appendLogs(runId, [{ stream: 'bad' as 'stdout', text: 'x' }]),
      'INVALID_ARGUMENT',
    );
  });

  it('records round metrics, merging a second report of the same round', async () => {
    const { records: s, runId } = await fresh();
    await s.addRoundMetrics(runId, {
      round: 1,
      metrics: { loss: 0.5 },
      nodeIds: ['a', 'b'],
      bytesSent: 10,
      bytesReceived: 20,
    });
    await s.addRoundMetrics(runId, { round: 2, metrics: { loss: 0.4 }, nodeIds: ['a'] });
    await s.addRoundMetrics(runId, {
      round: 1,
      metrics: { accuracy: 0.9 },
      nodeIds: ['b', 'c'],
      bytesSent: 1,
    });
    expect(await s.listRoundMetrics(runId)).toEqual([
      {
        round: 1,
        at: T0,
        metrics: { loss: 0.5, accuracy: 0.9 },
        nodeIds: ['a', 'b', 'c'],
        bytesSent: 11,
        bytesReceived: 20,
      },
      { round: 2, at: T0, metrics: { loss: 0.4 }, nodeIds: ['a'], bytesSent: 0, bytesReceived: 0 },
    ]);
    await expectCode(s.addRoundMetrics('nope', { round: 1, metrics: {} }), 'RUN_NOT_FOUND');
    await expectCode(s.addRoundMetrics(runId, { round: 1, metrics: { x: Number.NaN } }), 'INVALID_ARGUMENT');
    await expectCode(s.addRoundMetrics(runId, { round: -1, metrics: {} }), 'INVALID_ARGUMENT');
  });
});
