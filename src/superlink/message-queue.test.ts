/**
 * The message queue, through the LinkState that composes it with the node registry and the run
 * store, on both backends: instructions delivered once, replies checked and returned once, errors
 * synthesized for instructions that can no longer be answered, and byte budgets per pull.
 */
import { describe, expect, it, vi } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { activateNodes, expectCode, sshKeyLine as key, linkStates } from '../../test/support/link-states.js';
import { instruction, runningRun } from '../../test/support/runs.js';
import { ONLINE_GRACE_MS } from './node-registry.js';
import type { InstructionInput, LinkState } from './state.js';

const HB = 10_000;
const chunk = (c: string) => c.repeat(64);
const bytes = (...b: number[]) => new Uint8Array(b);

describe.each(storeBackends('messages'))('the message queue on %s', (backend, makeUrl) => {
  const { clock, state: fresh } = linkStates(backend, makeUrl);
  /** A running run with `n` active nodes n0…n{n-1}. */
  async function running(s: LinkState, n = 2) {
    await activateNodes(s, n, HB);
    return runningRun(s);
  }
  const ins = (id: string, dst: string, o: Partial<InstructionInput> = {}) =>
    instruction(id, dst, { groupId: 'round-1', createdAt: clock.t, payload: bytes(1, 2, 3), ...o });

  it('refuses a bad instruction batch as a whole', async () => {
    const s = await fresh({ maxMessageBytes: 8 });
    const runId = await running(s);
    const pending = await s.createRun({
      fabHash: 'x',
      fabName: 'x',
      fabVersion: '1',
      runConfig: {},
      federation: 'f',
      createdBy: 'c',
    });
    await expectCode(s.pushInstructions(pending.runId, [ins('m1', 'n0')]), 'RUN_NOT_RUNNING', {
      status: 'pending',
    });
    await expectCode(s.pushInstructions('nope', [ins('m1', 'n0')]), 'RUN_NOT_RUNNING');
    await expectCode(s.pushInstructions(runId, [ins('m1', 'n0'), ins('m2', 'ghost')]), 'NODE_UNKNOWN', {
      nodeId: 'ghost',
    });
    await expectCode(s.pushInstructions(runId, [ins('m1', 'n0'), ins('m1', 'n1')]), 'MESSAGE_DUPLICATE', {
      messageId: 'm1',
    });
    await expectCode(
      s.pushInstructions(runId, [ins('m1', 'n0'), ins('m2', 'n1', { payload: new Uint8Array(9) })]),
      'MESSAGE_TOO_LARGE',
      { messageId: 'm2' },
    );
    await expectCode(s.pushInstructions(runId, [ins('m1', 'n0', { chunkIds: ['x'] })]), 'MESSAGE_INVALID');
    await expectCode(s.pushInstructions(runId, [ins('m1', 'n0', { ttlMs: -1 })]), 'MESSAGE_INVALID');
    // Nothing of the refused batches was stored.
    expect(await s.pullInstructions('n0')).toEqual([]);
    await s.pushInstructions(runId, [ins('m1', 'n0')]);
    await expectCode(s.pushInstructions(runId, [ins('m3', 'n1'), ins('m1', 'n1')]), 'MESSAGE_DUPLICATE', {
      messageId: 'm1',
    });
    expect(await s.pullInstructions('n1')).toEqual([]);
  });

  it('delivers each instruction once, oldest first, only to its node and only before it expires', async () => {
    const s = await fresh();
    const runId = await running(s);
    await s.pushInstructions(runId, [
      ins('a', 'n0', { chunkIds: [chunk('a')] }),
      ins('b', 'n0', { createdAt: clock.t + 1 }),
      ins('c', 'n1'),
      ins('d', 'n0', { ttlMs: 10 }),
    ]);
    await expectCode(s.pullInstructions('ghost'), 'NODE_UNKNOWN');
    clock.t += 10; // d expired
    const first = await s.pullInstructions('n0', { limit: 1 });
    expect(first.map((m) => m.messageId)).toEqual(['a']);
    expect(first[0]).toMatchObject({
      kind: 'instruction',
      runId,
      srcNodeId: '0',
      dstNodeId: 'n0',
      replyTo: null,
      groupId: 'round-1',
      messageType: 'train',
      chunkIds: [chunk('a')],
    });
    expect([...first[0]!.payload]).toEqual([1, 2, 3]);
    expect((await s.pullInstructions('n0')).map((m) => m.messageId)).toEqual(['b']);
    expect(await s.pullInstructions('n0')).toEqual([]);
    expect((await s.pullInstructions('n1')).map((m) => m.messageId)).toEqual(['c']);
  });

  it('never delivers one instruction to two concurrent pulls', async () => {
    const s = await fresh();
    const runId = await running(s, 1);
    const ids = Array.from({ length: 60 }, (_, i) => `m${String(i).padStart(2, '0')}`);
    await s.pushInstructions(
      runId,
      ids.map((id) => ins(id, 'n0')),
    );
    const pulled: string[] = [];
    for (let round = 0; round < 10 && pulled.length < ids.length; round++) {
      const batches = await Promise.all([
        s.pullInstructions('n0', { limit: 7 }),
        s.pullInstructions('n0', { limit: 7 }),
        s.pullInstructions('n0', { limit: 7 }),
      ]);
      for (const b of batches) pulled.push(...b.map((m) => m.messageId));
    }
    expect(pulled.length).toBe(ids.length);
    expect(new Set(pulled).size).toBe(ids.length);
  });

  it('answers an empty poll from memory', async () => {
    const s = await fresh();
    const runId = await running(s);
    const spy = vi.spyOn(
      (s as unknown as { store: { db: { transaction(): unknown } } }).store.db,
      'transaction',
    );
    for (let i = 0; i < 50; i++) expect(await s.pullInstructions('n0')).toEqual([]);
    expect(spy).not.toHaveBeenCalled();
    await s.pushInstructions(runId, [ins('m1', 'n0')]);
    spy.mockClear();
    expect(await s.pullInstructions('n1')).toEqual([]);
    expect(spy).not.toHaveBeenCalled();
    expect((await s.pullInstructions('n0')).length).toBe(1);
    spy.mockClear();
    expect(await s.pullInstructions('n0')).toEqual([]);
    expect(spy).not.toHaveBeenCalled();
    spy.mockRestore();
  });

  it('claims at most a byte budget per pull; the rest waits, with no error synthesized for it', async () => {
    const s = await fresh();
    const runId = await running(s, 1);
    const ids = ['a', 'b', 'c', 'd', 'e'];
    await s.pushInstructions(
      runId,
      ids.map((id) => ins(id, 'n0', { payload: new Uint8Array(1000).fill(7) })),
    );
    const pulls: string[][] = [];
    for (let i = 0; i < 4; i++)
      pulls.push((await s.pullInstructions('n0', { maxBytes: 2500 })).map((m) => m.messageId));
    expect(pulls).toEqual([['a', 'b'], ['c', 'd'], ['e'], []]);
    // One message larger than the budget still goes, alone.
    await s.pushInstructions(runId, [ins('big', 'n0', { payload: new Uint8Array(4000) })]);
    expect((await s.pullInstructions('n0', { maxBytes: 2500 })).map((m) => m.messageId)).toEqual(['big']);
    await s.pushReplies(
      'n0',
      ids.map((id) => ({ messageId: `r${id}`, replyTo: id, payload: new Uint8Array(1000), chunkIds: [] })),
    );
    const got: string[][] = [];
    for (let i = 0; i < 4; i++)
      got.push(
        (await s.pullReplies(runId, ids, { maxBytes: 2500 })).map((r) =>
          r.kind === 'reply' ? r.messageId : `error:${r.replyTo}`,
        ),
      );
    expect(got).toEqual([['ra', 'rb'], ['rc', 'rd'], ['re'], []]);
  });

  it('fails at once the instructions a node held when it restarted (a new instance id), not on a reconnect', async () => {
    const s = await fresh();
    const runId = await running(s, 1);
    const activate = (instanceId: string) =>
      s.activateNode({ nodeId: 'n0', name: 'site-0', heartbeatIntervalMs: HB, instanceId });
    await activate('proc-1');
    await s.pushInstructions(runId, [ins('i0', 'n0')]);
    expect(await s.pullInstructions('n0')).toHaveLength(1);
    clock.t += 10;
    await activate('proc-1'); // the same process reconnecting (or renewing its session)
    expect(await s.pullReplies(runId, ['i0'])).toEqual([]);
    clock.t += 10;
    await activate('proc-2'); // a new process: what the old one held is gone
    const [lost] = await s.pullReplies(runId, ['i0']);
    expect(lost).toMatchObject({ kind: 'error', replyTo: 'i0', error: { code: 'NODE_UNAVAILABLE' } });
    expect(lost?.kind === 'error' && lost.error.reason).toMatch(/restarted/);
    // Work delivered to the new process is not affected.
    await s.pushInstructions(runId, [ins('i1', 'n0')]);
    expect(await s.pullInstructions('n0')).toHaveLength(1);
    clock.t += 10;
    await activate('proc-2');
    expect(await s.pullReplies(runId, ['i1'])).toEqual([]);
  });

  it('checks every reply and returns each one once', async () => {
    const s = await fresh({ maxMessageBytes: 8 });
    const runId = await running(s);
    await s.pushInstructions(runId, [
      ins('i0', 'n0', { groupId: 'g', messageType: 'evaluate' }),
      ins('i1', 'n1'),
      ins('i2', 'n0', { ttlMs: 5 }),
    ]);
    await s.pullInstructions('n0');
    await s.pullInstructions('n1');
    const reply = (id: string, replyTo: string, o: object = {}) => ({
      messageId: id,
      replyTo,
      payload: bytes(9),
      chunkIds: [chunk('b')],
      ...o,
    });
    await expectCode(s.pushReplies('ghost', [reply('r0', 'i0')]), 'NODE_UNKNOWN');
    await expectCode(s.pushReplies('n0', [reply('r0', 'i0'), reply('r1', 'i1')]), 'MESSAGE_NOT_FOR_NODE', {
      messageId: 'i1',
    });
    await expectCode(s.pushReplies('n0', [reply('r0', 'nope')]), 'MESSAGE_NOT_FOR_NODE');
    await expectCode(s.pushReplies('n0', [reply('r0', 'i0'), reply('r1', 'i0')]), 'REPLY_DUPLICATE');
    await expectCode(s.pushReplies('n0', [reply('r0', 'i0'), reply('r0', 'i2')]), 'MESSAGE_DUPLICATE');
    await expectCode(
      s.pushReplies('n0', [reply('r0', 'i0', { payload: new Uint8Array(9) })]),
      'MESSAGE_TOO_LARGE',
    );
    await expectCode(s.pushReplies('n0', [reply('i1', 'i0')]), 'MESSAGE_DUPLICATE', { messageId: 'i1' });
    clock.t += 5;
    await expectCode(s.pushReplies('n0', [reply('r0', 'i0'), reply('r2', 'i2')]), 'MESSAGE_EXPIRED', {
      messageId: 'i2',
    });
    expect(await s.pushReplies('n0', [reply('r0', 'i0')])).toEqual([runId]);
    await expectCode(s.pushReplies('n0', [reply('r9', 'i0')]), 'REPLY_DUPLICATE', { messageId: 'i0' });
    expect(await s.liveChunkIds()).toEqual(new Set([chunk('b')]));

    const got = await s.pullReplies(runId, ['i0', 'i1']);
    expect(got).toEqual([
      expect.objectContaining({
        kind: 'reply',
        messageId: 'r0',
        replyTo: 'i0',
        runId,
        srcNodeId: 'n0',
        dstNodeId: '0',
        groupId: 'g',
        messageType: 'evaluate',
        chunkIds: [chunk('b')],
      }),
    ]);
    expect([...(got[0] as { payload: Uint8Array }).payload]).toEqual([9]);
    expect(await s.pullReplies(runId, ['i0', 'i1'])).toEqual([]);
    // Registering the same key twice at once: one wins.
    const k = key();
    const twins = await Promise.allSettled([
      s.registerNodeKey({ nodeId: 'kk', publicKey: k, name: 'a' }),
      s.registerNodeKey({ nodeId: 'kk', publicKey: k, name: 'a' }),
    ]);
    expect(twins.map((x) => x.status).sort()).toEqual(['fulfilled', 'rejected']);
    // The instruction went with its reply: a late second reply is refused.
    await expectCode(s.pushReplies('n0', [reply('r5', 'i0')]), 'MESSAGE_NOT_FOR_NODE');

    await s.transitionRun(runId, 'finished', { subStatus: 'stopped' });
    await expectCode(s.pushReplies('n1', [reply('r1', 'i1')]), 'RUN_NOT_RUNNING', { runId });
    await expectCode(s.pushInstructions(runId, [ins('x', 'n0')]), 'RUN_NOT_RUNNING', {
      status: 'finished',
    });
  });

  it('synthesizes one error reply for an offline, deactivated or unregistered node and for an expired instruction', async () => {
    const s = await fresh();
    const runId = await running(s, 3);
    const k = key();
    await s.registerNodeKey({ nodeId: 'k', publicKey: k, name: 'keyed' });
    await s.activateNode({ nodeId: 'k', name: 'keyed', heartbeatIntervalMs: HB });
    await s.pushInstructions(runId, [
      ins('off', 'n0'),
      ins('deact', 'n1'),
      ins('unreg', 'k'),
      ins('exp', 'n2', { ttlMs: 2 * HB }),
      ins('live', 'n2', { ttlMs: 10 * HB }),
    ]);
    const ids = ['off', 'deact', 'unreg', 'exp', 'live'];
    expect(await s.pullReplies(runId, ids)).toEqual([]);
    await s.deactivateNode('n1');
    await s.unregisterNode('k');
    clock.t += 2 * HB + ONLINE_GRACE_MS; // n0 and n2 missed their heartbeats …
    s.heartbeat('n2', HB); // … but n2 is back
    const out = await s.pullReplies(runId, ids);
    expect(out).toEqual([
      {
        kind: 'error',
        runId,
        replyTo: 'off',
        dstNodeId: 'n0',
        groupId: 'round-1',
        messageType: 'train',
        error: { code: 'NODE_UNAVAILABLE', reason: 'node n0 went offline' },
      },
      expect.objectContaining({
        replyTo: 'deact',
        error: expect.objectContaining({ code: 'NODE_UNAVAILABLE' }),
      }),
      expect.objectContaining({
        replyTo: 'unreg',
        error: expect.objectContaining({ code: 'NODE_UNAVAILABLE' }),
      }),
      expect.objectContaining({
        replyTo: 'exp',
        error: expect.objectContaining({ code: 'MESSAGE_EXPIRED' }),
      }),
    ]);
    // Exactly once.
    expect(await s.pullReplies(runId, ids)).toEqual([]);
    // A reply that did arrive wins over a later outage.
    await s.pullInstructions('n2');
    await s.pushReplies('n2', [{ messageId: 'r', replyTo: 'live', payload: bytes(1), chunkIds: [] }]);
    clock.t += 10 * HB;
    expect(await s.pullReplies(runId, ['live'])).toEqual([
      expect.objectContaining({ kind: 'reply', replyTo: 'live' }),
    ]);
    // Another run cannot take this run's replies.
    expect(await s.pullReplies('other', ids)).toEqual([]);
  });

  it("deletes a run's messages and forgets their chunks", async () => {
    const s = await fresh();
    const runId = await running(s);
    await s.pushInstructions(runId, [ins('a', 'n0', { chunkIds: [chunk('1'), chunk('2')] }), ins('b', 'n1')]);
    expect(await s.liveChunkIds()).toEqual(new Set([chunk('1'), chunk('2')]));
    expect(await s.deleteRunMessages(runId)).toBe(2);
    expect(await s.liveChunkIds()).toEqual(new Set());
    expect(await s.pullInstructions('n0')).toEqual([]);
  });
});
