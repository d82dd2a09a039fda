/**
 * Run records alone (over the run store), on both backends: log lines in order, paged by seq, and
 * round metrics merged per round, with their replies and failures; what a run's final state says
 * about rounds with node errors.
 */
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { expectCode, linkStates, T0 } from '../../test/support/link-states.js';
import { runningRun } from '../../test/support/runs.js';
import { openDatabase } from '../store/database.js';
import { nodeErrorSummary, RunRecords } from './run-records.js';
import { RunStore } from './run-store.js';
import { type LinkSchema, linkStateMigrations } from './state-schema.js';

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
      replies: 2,
      failures: 1,
    });
    await s.addRoundMetrics(runId, { round: 2, metrics: { loss: 0.4 }, nodeIds: ['a'] });
    await s.addRoundMetrics(runId, {
      round: 1,
      metrics: { accuracy: 0.9 },
      nodeIds: ['b', 'c'],
      bytesSent: 1,
      replies: 3,
      failures: 1,
    });
    const rounds = await s.listRoundMetrics(runId);
    expect(rounds).toEqual([
      {
        round: 1,
        at: T0,
        metrics: { loss: 0.5, accuracy: 0.9 },
        nodeIds: ['a', 'b', 'c'],
        bytesSent: 11,
        bytesReceived: 20,
        replies: 5,
        failures: 2,
      },
      {
        round: 2,
        at: T0,
        metrics: { loss: 0.4 },
        nodeIds: ['a'],
        bytesSent: 0,
        bytesReceived: 0,
        replies: 0,
        failures: 0,
      },
    ]);
    expect(nodeErrorSummary(runId, rounds)).toBe(
      `1 of 2 rounds had node errors (2 failures): pollen log ${runId} shows them`,
    );
    await expectCode(s.addRoundMetrics('nope', { round: 1, metrics: {} }), 'RUN_NOT_FOUND');
    await expectCode(s.addRoundMetrics(runId, { round: 1, metrics: { x: Number.NaN } }), 'INVALID_ARGUMENT');
    await expectCode(s.addRoundMetrics(runId, { round: -1, metrics: {} }), 'INVALID_ARGUMENT');
    await expectCode(s.addRoundMetrics(runId, { round: 1, metrics: {}, failures: -1 }), 'INVALID_ARGUMENT');
    await expectCode(s.addRoundMetrics(runId, { round: 1, metrics: {}, replies: 0.5 }), 'INVALID_ARGUMENT');
  });

  it('migrates rounds reported before replies and failures were counted: they count none', async () => {
    const url = await makeUrl();
    const before = Object.fromEntries(
      Object.entries(linkStateMigrations(backend)).filter(([name]) => name < '0004'),
    );
    const old = await openDatabase<LinkSchema>({ url, migrations: before });
    try {
      await old.db
        .insertInto('run_metrics')
        .values({
          run_id: 'r-old',
          round: 1,
          at: T0,
          metrics: '{"loss":1}',
          node_ids: '["a"]',
          bytes_sent: 3,
          bytes_received: 4,
        } as never)
        .execute();
    } finally {
      await old.close();
    }
    const { db } = await store(url);
    const records = new RunRecords(
      db,
      backend === 'postgres',
      new RunStore(db, backend === 'postgres', now),
      now,
    );
    expect(await records.listRoundMetrics('r-old')).toEqual([
      {
        round: 1,
        at: T0,
        metrics: { loss: 1 },
        nodeIds: ['a'],
        bytesSent: 3,
        bytesReceived: 4,
        replies: 0,
        failures: 0,
      },
    ]);
  });
});

describe('nodeErrorSummary', () => {
  it('says nothing for clean rounds and counts rounds and failures otherwise', () => {
    expect(nodeErrorSummary('r', [])).toBe('');
    expect(nodeErrorSummary('r', [{ failures: 0 }, { failures: 0 }])).toBe('');
    expect(nodeErrorSummary('r', [{ failures: 1 }])).toBe(
      '1 of 1 round had node errors (1 failure): pollen log r shows them',
    );
    expect(nodeErrorSummary('r', [{ failures: 2 }, { failures: 0 }, { failures: 1 }])).toBe(
      '2 of 3 rounds had node errors (3 failures): pollen log r shows them',
    );
  });
});
