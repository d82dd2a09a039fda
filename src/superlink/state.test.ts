/**
 * The LinkState as a whole, on both backends: what it keeps across a reopen (a SuperLink restart),
 * the background liveness flush, and a federation of 2,000 nodes. Each part has its own tests
 * (node-registry, run-store, message-queue, run-records, nonce-store, node-site).
 */
import { describe, expect, it, vi } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { activateNodes, sshKeyLine as key, linkStates, T0 } from '../../test/support/link-states.js';
import { instruction, runningRun } from '../../test/support/runs.js';
import { type InstructionInput, type LinkState, ONLINE_GRACE_MS } from './state.js';

const HB = 10_000;
const bytes = (...b: number[]) => new Uint8Array(b);

describe.each(storeBackends('linkstate'))('LinkState on %s', (backend, makeUrl) => {
  const open = linkStates(backend, makeUrl);
  const { clock } = open;
  async function fresh(o: { livenessFlushMs?: number } = {}) {
    const url = await makeUrl();
    return { s: await open.state({ url, ...o }), url };
  }
  async function reopen(s: LinkState, url: string) {
    await s.close();
    return open.state({ url });
  }
  /** A running run with `n` active nodes n0…n{n-1}. */
  async function running(s: LinkState, n = 2) {
    await activateNodes(s, n, HB);
    return runningRun(s);
  }
  const ins = (id: string, dst: string, o: Partial<InstructionInput> = {}) =>
    instruction(id, dst, { groupId: 'round-1', createdAt: clock.t, payload: bytes(1, 2, 3), ...o });

  describe('restart', () => {
    it('keeps runs, nodes, registrations and liveness across a reopen, not the messages of runs in progress', async () => {
      const { s, url } = await fresh({ livenessFlushMs: 3_600_000 });
      const runId = await running(s, 2);
      const k = key();
      await s.registerNodeKey({ nodeId: 'k', publicKey: k, name: 'keyed' });
      await s.pushInstructions(runId, [ins('a', 'n0'), ins('b', 'n0'), ins('c', 'n1')]);
      expect((await s.pullInstructions('n0', { limit: 1 })).map((m) => m.messageId)).toEqual(['a']);
      await s.setRunToken(runId, 'tok');
      await s.appendLogs(runId, [{ stream: 'stdout', text: 'hi' }]);
      clock.t += 3_000;
      // Only in memory until the flush at close (the timer period is an hour here).
      expect(s.heartbeat('n0', 20_000)).toBe(true);

      const again = await reopen(s, url);
      expect(await again.getRun(runId)).toMatchObject({ status: 'running' });
      expect((await again.unfinishedRuns()).map((r) => r.runId)).toEqual([runId]);
      expect(await again.verifyRunToken(runId, 'tok')).toBe(true);
      expect(again.isKeyRegistered(k)).toBe('k');
      const nodes = Object.fromEntries(again.listNodes().map((n) => [n.nodeId, n]));
      expect(nodes['n0']).toMatchObject({
        status: 'online',
        lastSeenAt: T0 + 3_000,
        onlineUntil: T0 + 3_000 + 40_000 + ONLINE_GRACE_MS,
      });
      expect(nodes['k']).toMatchObject({ status: 'registered', registered: true });
      // Message payloads lived in the old process; the runs they belong to fail on restart.
      expect(await again.pullInstructions('n0')).toEqual([]);
      expect(await again.pullInstructions('n1')).toEqual([]);
      expect(await again.liveChunkIds()).toEqual(new Set());
      expect(await again.appendLogs(runId, [{ stream: 'stdout', text: 'again' }])).toBe(2);
      // Messages work as before afterwards.
      await again.pushInstructions(runId, [ins('d', 'n1', { payload: bytes(7, 8) })]);
      const [d] = await again.pullInstructions('n1');
      expect(d).toMatchObject({ messageId: 'd' });
      expect([...d!.payload]).toEqual([7, 8]);
    });

    it('flushes heartbeats in the background in batches', async () => {
      // The flush timer is faked: the test moves it on instead of waiting for it.
      vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
      try {
        const { s, url } = await fresh({ livenessFlushMs: 20 });
        await s.activateNode({ nodeId: 'n0', name: 'a', heartbeatIntervalMs: HB });
        clock.t += 1_000;
        s.heartbeat('n0', HB);
        const peek = await open.store(url);
        const lastSeen = async () =>
          (await peek.db.selectFrom('nodes').select('last_seen_at').executeTakeFirstOrThrow()).last_seen_at;
        vi.advanceTimersByTime(19);
        expect(await lastSeen()).toBe(T0);
        vi.advanceTimersByTime(1);
        // The flush the timer started commits on its own (no call here writes liveness).
        await vi.waitFor(async () => expect(await lastSeen()).toBe(T0 + 1_000), {
          timeout: 5_000,
          interval: 5,
        });
      } finally {
        vi.useRealTimers();
      }
    });
  });

  it('carries 2,000 nodes heartbeating and polling', async () => {
    const { s, url } = await fresh({ livenessFlushMs: 3_600_000 });
    const N = 2_000;
    const ids = Array.from({ length: N }, (_, i) => `node-${i}`);
    for (let i = 0; i < N; i += 100)
      await Promise.all(
        ids
          .slice(i, i + 100)
          .map((nodeId) => s.activateNode({ nodeId, name: nodeId, heartbeatIntervalMs: 30_000 })),
      );
    clock.t += 1_000;
    for (const id of ids) expect(s.heartbeat(id, 30_000)).toBe(true);
    for (const id of ids) expect(await s.pullInstructions(id)).toEqual([]);
    expect(s.onlineNodeIds().length).toBe(N);
    const runId = await running(s, 0);
    await s.pushInstructions(
      runId,
      ids.map((id) => ins(`m-${id}`, id)),
    );
    let delivered = 0;
    for (let i = 0; i < N; i += 200)
      for (const got of await Promise.all(ids.slice(i, i + 200).map((id) => s.pullInstructions(id))))
        delivered += got.length;
    expect(delivered).toBe(N);
    const again = await reopen(s, url);
    expect(again.listNodes().every((n) => n.lastSeenAt === T0 + 1_000)).toBe(true);
  });
});
