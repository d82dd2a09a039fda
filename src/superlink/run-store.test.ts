/**
 * The run store alone, on both backends: runs listed newest first, the lifecycle as
 * compare-and-set transitions, and run tokens kept only as hashes.
 */
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { expectCode, linkStates, T0 } from '../../test/support/link-states.js';
import { RunStore } from './run-store.js';

describe.each(storeBackends('runs'))('the run store on %s', (backend, makeUrl) => {
  const { clock, now, store } = linkStates(backend, makeUrl);
  const fresh = async () => new RunStore((await store()).db, backend === 'postgres', now);
  const input = {
    fabHash: 'a'.repeat(64),
    fabName: 'app',
    fabVersion: '1.0.0',
    runConfig: { lr: 0.01, tag: 'x', on: false },
    federation: 'default',
    createdBy: 'bob',
  };

  it('creates, reads and lists runs newest first', async () => {
    const s = await fresh();
    const a = await s.createRun(input);
    clock.t += 1;
    const b = await s.createRun({ ...input, createdBy: 'carol' });
    expect(a.runId).toMatch(/^[0-9a-f]{16}$/);
    expect(a).toMatchObject({
      status: 'pending',
      subStatus: '',
      pendingAt: T0,
      runConfig: input.runConfig,
    });
    expect(await s.getRun(a.runId)).toEqual(a);
    expect(await s.getRun('nope')).toBeUndefined();
    expect((await s.listRuns()).map((r) => r.runId)).toEqual([b.runId, a.runId]);
    expect((await s.listRuns({ limit: 1 })).map((r) => r.runId)).toEqual([b.runId]);
  });

  it('allows only pending → starting → running → finished, or → finished failed/stopped', async () => {
    const s = await fresh();
    const r = await s.createRun(input);
    await expectCode(s.transitionRun(r.runId, 'running'), 'RUN_STATE_CONFLICT', { status: 'pending' });
    await expectCode(s.transitionRun(r.runId, 'finished'), 'INVALID_ARGUMENT');
    await expectCode(s.transitionRun(r.runId, 'starting', { subStatus: 'failed' }), 'INVALID_ARGUMENT');
    await expectCode(s.transitionRun(r.runId, 'finished', { subStatus: 'completed' }), 'RUN_STATE_CONFLICT');
    clock.t += 5;
    expect(await s.transitionRun(r.runId, 'starting')).toMatchObject({
      status: 'starting',
      startingAt: T0 + 5,
    });
    await expectCode(s.transitionRun(r.runId, 'starting'), 'RUN_STATE_CONFLICT', { status: 'starting' });
    expect(await s.transitionRun(r.runId, 'running')).toMatchObject({ status: 'running' });
    const done = await s.transitionRun(r.runId, 'finished', { subStatus: 'completed', reason: 'ok' });
    expect(done).toMatchObject({
      status: 'finished',
      subStatus: 'completed',
      reason: 'ok',
      finishedAt: clock.t,
    });
    expect(await s.getRun(r.runId)).toEqual(done);
    await expectCode(s.transitionRun(r.runId, 'finished', { subStatus: 'stopped' }), 'RUN_STATE_CONFLICT', {
      status: 'finished',
    });
    await expectCode(s.transitionRun('nope', 'starting'), 'RUN_NOT_FOUND');
    // From pending and starting straight to finished (failed / stopped).
    const p = await s.createRun(input);
    expect(await s.transitionRun(p.runId, 'finished', { subStatus: 'stopped' })).toMatchObject({
      subStatus: 'stopped',
    });
    const q = await s.createRun(input);
    await s.transitionRun(q.runId, 'starting');
    await s.transitionRun(q.runId, 'finished', { subStatus: 'failed', reason: 'crashed' });
    expect((await s.unfinishedRuns()).length).toBe(0);
    const u = await s.createRun(input);
    expect((await s.unfinishedRuns()).map((x) => x.runId)).toEqual([u.runId]);
  });

  it('lets exactly one of two racing transitions win', async () => {
    const s = await fresh();
    const r = await s.createRun(input);
    const out = await Promise.allSettled([
      s.transitionRun(r.runId, 'starting'),
      s.transitionRun(r.runId, 'finished', { subStatus: 'stopped' }),
      s.transitionRun(r.runId, 'starting'),
    ]);
    expect(out.filter((o) => o.status === 'fulfilled').length).toBeGreaterThanOrEqual(1);
    // Starting twice can never both succeed.
    const starts = out.filter((o, i) => i !== 1 && o.status === 'fulfilled');
    expect(starts.length).toBeLessThanOrEqual(1);
    for (const o of out)
      if (o.status === 'rejected') expect((o.reason as { code: string }).code).toBe('RUN_STATE_CONFLICT');
  });

  it('keeps only a hash of the run token and checks it', async () => {
    const s = await fresh();
    const r = await s.createRun(input);
    expect(await s.verifyRunToken(r.runId, 'tok')).toBe(false);
    await s.setRunToken(r.runId, 'tok');
    expect(await s.verifyRunToken(r.runId, 'tok')).toBe(true);
    expect(await s.verifyRunToken(r.runId, 'tok2')).toBe(false);
    expect(await s.verifyRunToken('nope', 'tok')).toBe(false);
    await expectCode(s.setRunToken('nope', 'tok'), 'RUN_NOT_FOUND');
  });
});
