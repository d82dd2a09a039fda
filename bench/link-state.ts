/**
 * LinkState on SQLite (durable: WAL, synchronous=FULL): heartbeats/s, empty polls/s, activations/s
 * and instructions pushed+pulled/s for a federation of many nodes, beside a baseline of raw
 * better-sqlite3 durable commits (one INSERT per transaction) on the same disk.
 *
 *   npx tsx bench/link-state.ts [--nodes 1000] [--rounds 5] [--json]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { openLinkState } from '../src/superlink/state.js';
import { machineInfo } from './lib/env.js';
import { num, table, times } from './lib/table.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const NODES = arg('nodes', 1000);
const ROUNDS = arg('rounds', 5);
const PAYLOAD = 1024;
const json = process.argv.includes('--json');

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`wrong answer: ${what}`);
}

/** Repeat `fn` for about `seconds` (at least once); returns operations per second. */
async function rate(seconds: number, fn: () => Promise<number> | number): Promise<number> {
  let ops = 0;
  const t0 = performance.now();
  do ops += await fn();
  while (performance.now() - t0 < seconds * 1000);
  return ops / ((performance.now() - t0) / 1000);
}

function baselineCommits(dir: string, seconds: number): number {
  const db = new SQLite(join(dir, 'baseline.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  const tx = db.transaction((v: Buffer) => ins.run(v));
  const v = Buffer.alloc(PAYLOAD);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    tx(v);
    n++;
  }
  const r = n / ((performance.now() - t0) / 1000);
  db.close();
  return r;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pollen-bench-linkstate-'));
  try {
    const state = await openLinkState({ url: join(dir, 'link.db') });
    const ids = Array.from({ length: NODES }, (_, i) => `node-${String(i).padStart(5, '0')}`);

    // Activations: all nodes at once (a SuperLink restart), group-committed.
    let t0 = performance.now();
    await Promise.all(
      ids.map((nodeId) => state.activateNode({ nodeId, name: nodeId, heartbeatIntervalMs: 10_000 })),
    );
    const activations = NODES / ((performance.now() - t0) / 1000);
    check(state.onlineNodeIds().length === NODES, 'all nodes online');

    // Warm up, then measure.
    for (const id of ids) state.heartbeat(id, 10_000);
    const heartbeats = await rate(1, () => {
      for (const id of ids) check(state.heartbeat(id, 10_000), 'heartbeat known');
      return NODES;
    });
    t0 = performance.now();
    await state.flushLiveness();
    const flushMs = performance.now() - t0;

    const emptyPolls = await rate(1, async () => {
      for (const id of ids) check((await state.pullInstructions(id)).length === 0, 'empty poll');
      return NODES;
    });

    const run = await state.createRun({
      fabHash: 'f'.repeat(64),
      fabName: 'bench',
      fabVersion: '1.0.0',
      runConfig: {},
      federation: 'default',
      createdBy: 'bench',
    });
    await state.transitionRun(run.runId, 'starting');
    await state.transitionRun(run.runId, 'running');
    const payload = new Uint8Array(PAYLOAD);

    // A round: one instruction per node (one push), every node pulls at once, every node replies,
    // the ServerApp pulls all replies.
    let pushPullMs = 0;
    let replyMs = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const now = Date.now();
      const items = ids.map((id) => ({
        messageId: `r${r}-${id}`,
        dstNodeId: id,
        groupId: `round-${r}`,
        messageType: 'train',
        createdAt: now,
        ttlMs: 600_000,
        payload,
        chunkIds: [],
      }));
      t0 = performance.now();
      await state.pushInstructions(run.runId, items);
      const pulled = await Promise.all(ids.map((id) => state.pullInstructions(id)));
      pushPullMs += performance.now() - t0;
      check(
        pulled.every((p, i) => p.length === 1 && p[0]!.messageId === items[i]!.messageId),
        'each node gets its one instruction',
      );
      t0 = performance.now();
      await Promise.all(
        ids.map((id) =>
          state.pushReplies(id, [
            { messageId: `re-${r}-${id}`, replyTo: `r${r}-${id}`, payload, chunkIds: [] },
          ]),
        ),
      );
      const replies = await state.pullReplies(
        run.runId,
        items.map((i) => i.messageId),
      );
      replyMs += performance.now() - t0;
      check(replies.length === NODES && replies.every((x) => x.kind === 'reply'), 'every reply once');
    }
    const instructions = (NODES * ROUNDS) / (pushPullMs / 1000);
    const replies = (NODES * ROUNDS) / (replyMs / 1000);
    await state.close();
    const baseline = baselineCommits(dir, 1);

    const result = {
      machine: machineInfo(),
      nodes: NODES,
      rounds: ROUNDS,
      payloadBytes: PAYLOAD,
      heartbeatsPerSecond: heartbeats,
      livenessFlushMs: flushMs,
      emptyPollsPerSecond: emptyPolls,
      activationsPerSecond: activations,
      instructionsPushedPulledPerSecond: instructions,
      repliesPushedPulledPerSecond: replies,
      baselineDurableCommitsPerSecond: baseline,
    };
    if (json) {
      console.log(JSON.stringify(result, null, 2));
      return;
    }
    console.log(
      `LinkState on SQLite (WAL, synchronous=FULL), ${NODES} nodes, ${ROUNDS} rounds, ${PAYLOAD} B payloads`,
    );
    console.log(
      table(
        ['operation', 'per second', '÷ raw durable commits/s'],
        [
          ['heartbeat (in memory)', num(heartbeats), times(heartbeats / baseline)],
          ['empty poll (pullInstructions, nothing queued)', num(emptyPolls), times(emptyPolls / baseline)],
          ['node activation (all at once)', num(activations), times(activations / baseline)],
          [
            'instruction pushed + pulled (all nodes at once)',
            num(instructions),
            times(instructions / baseline),
          ],
          ['reply pushed + pulled (all nodes at once)', num(replies), times(replies / baseline)],
          ['baseline: raw better-sqlite3 commit of one 1 KiB row', num(baseline), times(1)],
        ],
      ),
    );
    console.log(`liveness flush of ${NODES} nodes: ${num(flushMs, 1)} ms (one transaction)`);
    console.log(`${result.machine.cpus} × ${result.machine.cpuModel}, Node ${result.machine.node}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
