import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, inject, it, vi } from 'vitest';
import { createTestDatabase } from '../../test/support/postgres.js';
import { openDatabase } from '../store/database.js';
import { type InstructionInput, type LinkState, ONLINE_GRACE_MS, openLinkState } from './state.js';
import { type LinkSchema, linkStateMigrations } from './state-schema.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-linkstate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const backends = [
  ['sqlite', async () => join(dir, `${randomUUID()}.db`)],
  [
    'postgres',
    async () => createTestDatabase(inject('postgresUrl'), `t_${randomUUID().replaceAll('-', '')}`),
  ],
] as const;

const T0 = 1_700_000_000_000;
const HB = 10_000;
/** An OpenSSH public key line: the blob starts with its type as an SSH string. */
const key = (comment = 'site') => {
  const type = 'ecdsa-sha2-nistp384';
  const len = Buffer.alloc(4);
  len.writeUInt32BE(type.length);
  const blob = Buffer.concat([len, Buffer.from(type), randomBytes(48)]);
  return `${type} ${blob.toString('base64')} ${comment}`;
};
const chunk = (c: string) => c.repeat(64);
const bytes = (...b: number[]) => new Uint8Array(b);

async function expectCode(p: Promise<unknown> | (() => unknown), code: string, data?: object) {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toMatchObject({
    code,
    ...(data ? { data: expect.objectContaining(data) } : {}),
  });
}

describe.each(backends)('LinkState on %s', (backend, makeUrl) => {
  let t = T0;
  const open: LinkState[] = [];
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });
  async function fresh(o: { url?: string; maxMessageBytes?: number; livenessFlushMs?: number } = {}) {
    const url = o.url ?? (await makeUrl());
    t = T0;
    const s = await openLinkState({ url, now: () => t, ...o });
    open.push(s);
    return { s, url };
  }
  async function reopen(s: LinkState, url: string) {
    await s.close();
    const again = await openLinkState({ url, now: () => t });
    open.push(again);
    return again;
  }
  /** A running run with `n` active nodes n0…n{n-1}. */
  async function running(s: LinkState, n = 2) {
    for (let i = 0; i < n; i++)
      await s.activateNode({ nodeId: `n${i}`, name: `site-${i}`, heartbeatIntervalMs: HB });
    const run = await s.createRun({
      fabHash: 'f'.repeat(64),
      fabName: 'app',
      fabVersion: '1.0.0',
      runConfig: { lr: 0.1, epochs: 2, name: 'x', fast: true },
      federation: 'default',
      createdBy: 'alice',
    });
    await s.transitionRun(run.runId, 'starting');
    await s.transitionRun(run.runId, 'running');
    return run.runId;
  }
  const ins = (id: string, dst: string, o: Partial<InstructionInput> = {}): InstructionInput => ({
    messageId: id,
    dstNodeId: dst,
    groupId: 'round-1',
    messageType: 'train',
    createdAt: t,
    ttlMs: 60_000,
    payload: bytes(1, 2, 3),
    chunkIds: [],
    ...o,
  });

  describe('nodes', () => {
    it('registers a key once, finds it from any line of the same key, and refuses it twice', async () => {
      const { s } = await fresh();
      const k = key('alice@site');
      const n = await s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'hospital-a' });
      expect(n).toMatchObject({
        nodeId: 'k1',
        registered: true,
        status: 'registered',
        publicKey: k.split(' ').slice(0, 2).join(' '),
      });
      expect(s.isKeyRegistered(k)).toBe('k1');
      expect(s.isKeyRegistered(`${k.split(' ').slice(0, 2).join(' ')} other-comment`)).toBe('k1');
      expect(s.isKeyRegistered(key())).toBeUndefined();
      expect(s.isKeyRegistered('garbage')).toBeUndefined();
      await expectCode(
        s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'x' }),
        'NODE_ALREADY_REGISTERED',
        {
          nodeId: 'k1',
        },
      );
      // A key is unique: the same key under another id is refused too.
      await expectCode(
        s.registerNodeKey({ nodeId: 'k2', publicKey: k, name: 'x' }),
        'NODE_ALREADY_REGISTERED',
        {
          nodeId: 'k1',
        },
      );
      await expectCode(
        s.registerNodeKey({ nodeId: 'k3', publicKey: 'not a key!', name: 'x' }),
        'SSH_KEY_INVALID',
      );
      await expectCode(
        s.registerNodeKey({ nodeId: 'k3', publicKey: `ssh-ed25519 ${k.split(' ')[1]}`, name: 'x' }),
        'SSH_KEY_INVALID',
      );
    });

    it('activates, heartbeats in memory, goes offline after 2 intervals + grace, and deactivates', async () => {
      const { s } = await fresh();
      const n = await s.activateNode({
        nodeId: 'c1',
        name: 'site-c',
        certFingerprint: 'ab:cd',
        heartbeatIntervalMs: HB,
      });
      expect(n).toMatchObject({
        status: 'online',
        registered: false,
        certFingerprint: 'ab:cd',
        lastSeenAt: T0,
      });
      expect(s.onlineNodeIds()).toEqual(['c1']);
      t += 2 * HB + ONLINE_GRACE_MS - 1;
      expect(s.onlineNodeIds()).toEqual(['c1']);
      t += 1;
      expect(s.onlineNodeIds()).toEqual([]);
      expect(s.listNodes()[0]).toMatchObject({ nodeId: 'c1', status: 'offline' });
      expect(s.heartbeat('c1', HB)).toBe(true);
      expect(s.listNodes()[0]).toMatchObject({ status: 'online', lastSeenAt: t });
      expect(s.heartbeat('nope', HB)).toBe(false);
      await s.deactivateNode('c1');
      expect(s.heartbeat('c1', HB)).toBe(false);
      expect(s.onlineNodeIds()).toEqual([]);
      await expectCode(s.deactivateNode('nope'), 'NODE_UNKNOWN', { nodeId: 'nope' });
      await expectCode(() => s.heartbeat('c1', 0), 'INVALID_ARGUMENT');
      // Re-activation (a restarted SuperNode) keeps the id.
      await s.activateNode({ nodeId: 'c1', name: 'site-c', heartbeatIntervalMs: HB });
      expect(s.listNodes()).toEqual([
        expect.objectContaining({ nodeId: 'c1', status: 'online', certFingerprint: 'ab:cd' }),
      ]);
    });

    it('a registered node keeps its admin-given name; an unregistered one can no longer activate', async () => {
      const { s } = await fresh();
      const k = key();
      await s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'admin-name' });
      const n = await s.activateNode({ nodeId: 'k1', name: 'self-name', heartbeatIntervalMs: HB });
      expect(n).toMatchObject({ name: 'admin-name', registered: true, status: 'online' });
      await s.unregisterNode('k1');
      expect(s.isKeyRegistered(k)).toBeUndefined();
      expect(s.heartbeat('k1', HB)).toBe(false);
      expect(s.listNodes()[0]).toMatchObject({ registered: false, status: 'offline' });
      await expectCode(
        s.activateNode({ nodeId: 'k1', name: 'x', heartbeatIntervalMs: HB }),
        'NODE_NOT_REGISTERED',
      );
      await expectCode(s.unregisterNode('k1'), 'NODE_NOT_REGISTERED');
      await expectCode(s.unregisterNode('nope'), 'NODE_UNKNOWN');
      // An admin may register it again.
      await s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'admin-name' });
      expect(s.isKeyRegistered(k)).toBe('k1');
      await s.activateNode({ nodeId: 'k1', name: 'x', heartbeatIntervalMs: HB });
      expect(s.onlineNodeIds()).toEqual(['k1']);
    });
  });

  describe('runs', () => {
    const input = {
      fabHash: 'a'.repeat(64),
      fabName: 'app',
      fabVersion: '1.0.0',
      runConfig: { lr: 0.01, tag: 'x', on: false },
      federation: 'default',
      createdBy: 'bob',
    };

    it('creates, reads and lists runs newest first', async () => {
      const { s } = await fresh();
      const a = await s.createRun(input);
      t += 1;
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
      const { s } = await fresh();
      const r = await s.createRun(input);
      await expectCode(s.transitionRun(r.runId, 'running'), 'RUN_STATE_CONFLICT', { status: 'pending' });
      await expectCode(s.transitionRun(r.runId, 'finished'), 'INVALID_ARGUMENT');
      await expectCode(s.transitionRun(r.runId, 'starting', { subStatus: 'failed' }), 'INVALID_ARGUMENT');
      await expectCode(
        s.transitionRun(r.runId, 'finished', { subStatus: 'completed' }),
        'RUN_STATE_CONFLICT',
      );
      t += 5;
      expect(await s.transitionRun(r.runId, 'starting')).toMatchObject({
        status: 'starting',
        startingAt: T0 + 5,
      });
      await expectCode(s.transitionRun(r.runId, 'starting'), 'RUN_STATE_CONFLICT', { status: 'starting' });
      expect(await s.transitionRun(r.runId, 'running')).toMatchObject({ status: 'running' });
      const done = await s.transitionRun(r.runId, 'finished', { subStatus: 'completed', reason: 'ok' });
      expect(done).toMatchObject({ status: 'finished', subStatus: 'completed', reason: 'ok', finishedAt: t });
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
      const { s } = await fresh();
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
      const { s } = await fresh();
      const r = await s.createRun(input);
      expect(await s.verifyRunToken(r.runId, 'tok')).toBe(false);
      await s.setRunToken(r.runId, 'tok');
      expect(await s.verifyRunToken(r.runId, 'tok')).toBe(true);
      expect(await s.verifyRunToken(r.runId, 'tok2')).toBe(false);
      expect(await s.verifyRunToken('nope', 'tok')).toBe(false);
      await expectCode(s.setRunToken('nope', 'tok'), 'RUN_NOT_FOUND');
    });
  });

  describe('messages', () => {
    it('refuses a bad instruction batch as a whole', async () => {
      const { s } = await fresh({ maxMessageBytes: 8 });
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
      const { s } = await fresh();
      const runId = await running(s);
      await s.pushInstructions(runId, [
        ins('a', 'n0', { chunkIds: [chunk('a')] }),
        ins('b', 'n0', { createdAt: t + 1 }),
        ins('c', 'n1'),
        ins('d', 'n0', { ttlMs: 10 }),
      ]);
      await expectCode(s.pullInstructions('ghost'), 'NODE_UNKNOWN');
      t += 10; // d expired
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
      const { s } = await fresh();
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
      const { s } = await fresh();
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
      const { s } = await fresh();
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
      const { s } = await fresh();
      const runId = await running(s, 1);
      const activate = (instanceId: string) =>
        s.activateNode({ nodeId: 'n0', name: 'site-0', heartbeatIntervalMs: HB, instanceId });
      await activate('proc-1');
      await s.pushInstructions(runId, [ins('i0', 'n0')]);
      expect(await s.pullInstructions('n0')).toHaveLength(1);
      t += 10;
      await activate('proc-1'); // the same process reconnecting (or renewing its session)
      expect(await s.pullReplies(runId, ['i0'])).toEqual([]);
      t += 10;
      await activate('proc-2'); // a new process: what the old one held is gone
      const [lost] = await s.pullReplies(runId, ['i0']);
      expect(lost).toMatchObject({ kind: 'error', replyTo: 'i0', error: { code: 'NODE_UNAVAILABLE' } });
      expect(lost?.kind === 'error' && lost.error.reason).toMatch(/restarted/);
      // Work delivered to the new process is not affected.
      await s.pushInstructions(runId, [ins('i1', 'n0')]);
      expect(await s.pullInstructions('n0')).toHaveLength(1);
      t += 10;
      await activate('proc-2');
      expect(await s.pullReplies(runId, ['i1'])).toEqual([]);
    });

    it('checks every reply and returns each one once', async () => {
      const { s } = await fresh({ maxMessageBytes: 8 });
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
      t += 5;
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
      const { s } = await fresh();
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
      t += 2 * HB + ONLINE_GRACE_MS; // n0 and n2 missed their heartbeats …
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
      t += 10 * HB;
      expect(await s.pullReplies(runId, ['live'])).toEqual([
        expect.objectContaining({ kind: 'reply', replyTo: 'live' }),
      ]);
      // Another run cannot take this run's replies.
      expect(await s.pullReplies('other', ids)).toEqual([]);
    });

    it("deletes a run's messages and forgets their chunks", async () => {
      const { s } = await fresh();
      const runId = await running(s);
      await s.pushInstructions(runId, [
        ins('a', 'n0', { chunkIds: [chunk('1'), chunk('2')] }),
        ins('b', 'n1'),
      ]);
      expect(await s.liveChunkIds()).toEqual(new Set([chunk('1'), chunk('2')]));
      expect(await s.deleteRunMessages(runId)).toBe(2);
      expect(await s.liveChunkIds()).toEqual(new Set());
      expect(await s.pullInstructions('n0')).toEqual([]);
    });
  });

  describe('logs and metrics', () => {
    it('appends logs in order and pages them by seq', async () => {
      const { s } = await fresh();
      const runId = await running(s, 0);
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
      const { s } = await fresh();
      const runId = await running(s, 0);
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
      await expectCode(
        s.addRoundMetrics(runId, { round: 1, metrics: { x: Number.NaN } }),
        'INVALID_ARGUMENT',
      );
      await expectCode(s.addRoundMetrics(runId, { round: -1, metrics: {} }), 'INVALID_ARGUMENT');
    });
  });

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
      t += 3_000;
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
      const { s, url } = await fresh({ livenessFlushMs: 20 });
      await s.activateNode({ nodeId: 'n0', name: 'a', heartbeatIntervalMs: HB });
      t += 1_000;
      s.heartbeat('n0', HB);
      const peek = await openDatabase<LinkSchema>({ url, migrations: linkStateMigrations(backend) });
      try {
        await vi.waitFor(
          async () => {
            const row = await peek.db.selectFrom('nodes').selectAll().executeTakeFirstOrThrow();
            expect(row.last_seen_at).toBe(T0 + 1_000);
          },
          { timeout: 5_000, interval: 20 },
        );
      } finally {
        await peek.close();
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
    t += 1_000;
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
