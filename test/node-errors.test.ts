/**
 * A node's failure is visible, in process over real TLS: the SuperNode logs its ClientApp's error
 * as the error reply gives it (so `errorDetail: 'none'` keeps the message out of the site's log
 * too), the run's log names the node, each round counts replies apart from failures (error replies
 * and messages nobody answered in time), and a run that completes despite them says so.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteGrid } from '../src/apps/remote-grid.js';
import { ClientApp, type ClientAppOptions } from '../src/sdk/app.js';
import { Message } from '../src/sdk/message.js';
import { MetricRecord, RecordDict } from '../src/sdk/records.js';
import { type SuperNode, startSuperNode } from '../src/supernode/supernode.js';
import { type InProcessLink, startInProcessLink } from './support/inproc.js';

const SECRET = 'patient 4711 has no record';
const dir = mkdtempSync(join(tmpdir(), 'pollen-node-errors-'));
let l: InProcessLink;
const nodes: SuperNode[] = [];
/** Each node's log, as JSON objects. */
const logs = new Map<string, Record<string, unknown>[]>();

async function embeddedNode(name: string, options: ClientAppOptions): Promise<SuperNode> {
  const lines: Record<string, unknown>[] = [];
  logs.set(name, lines);
  const node = await startSuperNode({
    superlink: l.superlink.fleetUrl,
    tls: await l.tls(name),
    name,
    workDir: join(dir, name),
    app: new ClientApp(options),
    log: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) }),
    pollIntervalMs: 100,
  });
  nodes.push(node);
  await node.ready;
  return node;
}

const fail = (): RecordDict => {
  throw new Error(SECRET);
};

beforeAll(async () => {
  l = await startInProcessLink('pollen-node-errors-link-');
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.close();
  await l?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a ClientApp that throws', () => {
  it('is logged by its node and the run, counted apart from replies, and named in the final state', async () => {
    const good = await embeddedNode('good', {
      train: () => new RecordDict({ metrics: new MetricRecord({ 'num-examples': 1 }) }),
    });
    const loud = await embeddedNode('loud', { train: fail });
    const quiet = await embeddedNode('quiet', { train: fail, errorDetail: 'none' });
    const silent = await l.site('silent'); // online, never answers
    const { runId, app, appChunks } = await l.run();
    const grid = new RemoteGrid(app, appChunks, runId);
    const train = (nodeIds: string[]) =>
      nodeIds.map((dstNodeId) =>
        Message.create({ dstNodeId, messageType: 'train', content: new RecordDict(), ttlSeconds: 60 }),
      );

    // Round 1: one model, two thrown errors, one node that does not answer in time.
    const replies = await grid.sendAndReceive(train([good.nodeId, loud.nodeId, quiet.nodeId]), {
      timeoutMs: 30_000,
    });
    const bySource = new Map(replies.map((r) => [r.metadata.srcNodeId, r]));
    expect(bySource.get(good.nodeId)?.hasContent()).toBe(true);
    expect(bySource.get(loud.nodeId)?.error).toEqual({
      code: 'CLIENT_APP_RAISED_EXCEPTION',
      reason: `Error: ${SECRET}`,
    });
    expect(bySource.get(quiet.nodeId)?.error?.reason).toBe('The ClientApp raised an exception');
    expect(await grid.sendAndReceive(train([silent.nodeId]), { timeoutMs: 200 })).toEqual([]);
    await grid.reportRound({ round: 1, metrics: {}, nodeIds: [good.nodeId] });
    // Round 2: clean.
    await grid.sendAndReceive(train([good.nodeId]), { timeoutMs: 30_000 });
    await grid.reportRound({ round: 2, metrics: {}, nodeIds: [good.nodeId] });
    await app.finishRun({ subStatus: 'completed' });

    // The sites' logs: the error as the reply gives it; the quiet app's message stays out.
    const appErrors = (name: string) => logs.get(name)!.filter((e) => e.msg === 'the ClientApp failed');
    expect(appErrors('loud')).toEqual([
      expect.objectContaining({
        runId,
        messageType: 'train',
        code: 'CLIENT_APP_RAISED_EXCEPTION',
        reason: `Error: ${SECRET}`,
      }),
    ]);
    expect(appErrors('quiet')).toEqual([
      expect.objectContaining({ runId, reason: 'The ClientApp raised an exception' }),
    ]);
    expect(JSON.stringify(logs.get('quiet'))).not.toContain(SECRET);
    expect(appErrors('good')).toEqual([]);

    // The run: its log names the failed nodes, its rounds count failures, its state says so.
    const { control } = await l.admin();
    const log = (await l.superlink.state.readLogs(runId)).map((line) => line.text);
    expect(log).toContain(`node ${loud.nodeId} train failed: CLIENT_APP_RAISED_EXCEPTION: Error: ${SECRET}`);
    expect(log).toContain(
      `node ${quiet.nodeId} train failed: CLIENT_APP_RAISED_EXCEPTION: The ClientApp raised an exception`,
    );
    expect(log.join('\n')).not.toContain(`${quiet.nodeId} train failed: CLIENT_APP_RAISED_EXCEPTION: Error`);
    const details = await control.getRunDetails({ runId });
    expect(details.rounds.map((r) => [r.round, r.nodeIds, r.replies, r.failures])).toEqual([
      [1, [good.nodeId], 1, 3],
      [2, [good.nodeId], 1, 0],
    ]);
    const reason = `1 of 2 rounds had node errors (3 failures): pollen log ${runId} shows them`;
    expect(details.run).toMatchObject({ status: 'finished', subStatus: 'completed', reason });
    expect(log.at(-1)).toBe(`run completed: ${reason}`);
  }, 60_000);
});
