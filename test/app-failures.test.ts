/**
 * ClientApps that fail, in a real federation (CLI processes): one site's app throws, and the
 * run's log, its round metrics and its final state show it while the other site carries the run;
 * an app module without its ClientApp is refused by each node as soon as the run reaches it, with
 * the code and the hint, instead of a round without replies at the end.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FEDERATION,
  type Federation,
  finishedRun,
  ROOT,
  type SuperNodeProc,
  startFederation,
  startRun,
  stopAll,
} from './support/federation.js';

const NO_EXPORT_APP = join(ROOT, 'test', 'fixtures', 'apps', 'no-export');

afterAll(async () => {
  await stopAll();
});

let fed: Federation;
let nodes: SuperNodeProc[];

beforeAll(async () => {
  fed = await startFederation('pollen-appfail-');
  nodes = [await fed.addNode('appfail-0', 0), await fed.addNode('appfail-1', 1)];
}, 60_000);
afterAll(async () => {
  await fed?.close();
});

/** The errors a site logged for its ClientApp (JSON log lines on its stderr). */
const appFailures = (n: SuperNodeProc): Record<string, unknown>[] =>
  n
    .stderr()
    .split('\n')
    .filter((line) => line.includes('"the ClientApp failed"'))
    .map((line) => JSON.parse(line));

const runLog = async (runId: string): Promise<string> => {
  const r = await fed.query(['log', runId, FEDERATION]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
};

describe('a ClientApp that fails', () => {
  it("one site's app throws: its log, the run's log, the round counts and the final state say so", async () => {
    const [healthy, failing] = nodes as [SuperNodeProc, SuperNodeProc];
    const runId = await startRun(fed, ['min-nodes=1', 'fail-partition=1']);
    const d = await finishedRun(fed, runId);
    const reason = `2 of 2 rounds had node errors (2 failures): pollen log ${runId} shows them`;
    expect(d.run).toMatchObject({ subStatus: 'completed', reason });
    expect(d.rounds.map((r) => [r.round, r.nodes, r.replies, r.failures])).toEqual([
      [1, [healthy.nodeId], 1, 1],
      [2, [healthy.nodeId], 1, 1],
    ]);
    expect(d.rounds[1]!.metrics.w0).toBe(2); // partition 0 alone adds 1 a round

    const log = await runLog(runId);
    expect(log).toContain(
      `node ${failing.nodeId} train failed: CLIENT_APP_RAISED_EXCEPTION: Error: no training data for partition 1`,
    );
    expect(log).toContain(`run completed: ${reason}`);
    const text = await fed.query(['list', FEDERATION, '--run-id', runId]);
    expect(text.stdout).toContain(`finished:completed  (${reason})`);
    expect(text.stdout).toMatch(/round +1 .*1 node, 1 reply, 1 failed/);

    expect(appFailures(failing)).toEqual([
      expect.objectContaining({
        runId,
        code: 'CLIENT_APP_RAISED_EXCEPTION',
        reason: 'Error: no training data for partition 1',
      }),
      expect.objectContaining({ runId, code: 'CLIENT_APP_RAISED_EXCEPTION' }),
    ]);
    expect(appFailures(healthy)).toEqual([]);
  }, 90_000);

  it('an app module without its ClientApp is refused on each node with the code and the hint', async () => {
    const runId = await startRun(fed, [], NO_EXPORT_APP);
    // Within a minute: refused at the first instruction, not after the round's 300 s wait.
    const d = await finishedRun(fed, runId, 60_000);
    expect(d.run.subStatus).toBe('failed');
    expect(d.run.reason).toBe(
      'RUN_FAILED: Round 1: no node returned a model (2 of 2 failed: APP_EXPORT_MISSING)',
    );
    const log = await runLog(runId);
    const refusal =
      'APP_EXPORT_MISSING: The ClientApp module exports no ClientApp: it has no default export and no `app` (it exports train). Export it from the file package.json names as pollen.clientapp';
    for (const n of nodes) {
      expect(log).toContain(`node ${n.nodeId} train failed: ${refusal}`);
      expect(appFailures(n)).toContainEqual(
        expect.objectContaining({
          runId,
          code: 'APP_EXPORT_MISSING',
          reason: expect.stringContaining('pollen.clientapp'),
        }),
      );
    }
  }, 90_000);
});
