/**
 * A node's reply is checked before it is stored: malformed metadata that would make the
 * ServerApp fail to rebuild the message is refused for that reply only. Admins of another
 * project are refused by the Control API.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { isPollenError } from '../errors.js';
import { MessageSchema } from '../gen/pollen/v1/records_pb.js';
import { DiskChunkStore } from '../transport/chunks.js';
import { controlBulkAuth } from './control-service.js';
import { Link } from './link.js';
import { RelayChunks } from './relay-chunks.js';
import { openLinkState } from './state.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-reply-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Link.pushReply', () => {
  it('refuses a reply whose metadata the ServerApp could not read, and keeps the instruction open', async () => {
    const state = await openLinkState({ url: join(dir, 'link.db') });
    const link = new Link({
      state,
      chunks: new DiskChunkStore(join(dir, 'chunks')),
      relay: new RelayChunks({ dir: join(dir, 'run-chunks') }),
      stateDir: dir,
      log: pino({ level: 'silent' }),
      nodeAuth: false,
    });
    const run = await state.createRun({
      fabHash: `sha256:${'a'.repeat(64)}`,
      fabName: 'a',
      fabVersion: '1',
      runConfig: {},
      federation: 'f',
      createdBy: 't',
    });
    await state.transitionRun(run.runId, 'starting');
    await state.transitionRun(run.runId, 'running');
    await state.activateNode({ nodeId: 'n1', name: 'n1', heartbeatIntervalMs: 10_000 });
    await state.pushInstructions(run.runId, [
      {
        messageId: 'i1',
        dstNodeId: 'n1',
        groupId: 'g',
        messageType: 'train',
        createdAt: Date.now(),
        ttlMs: 60_000,
        payload: new Uint8Array(4),
        chunkIds: [],
      },
    ]);
    const reply = (patch: Record<string, unknown>) =>
      create(MessageSchema, {
        metadata: {
          runId: run.runId,
          messageId: 'r1',
          replyToMessageId: 'i1',
          groupId: 'g',
          messageType: 'train',
          ttlSeconds: 10,
          createdAt: BigInt(Date.now()),
          ...patch,
        },
        body: { case: 'content', value: { records: [] } },
      });
    for (const bad of [{ messageType: 'bogus' }, { ttlSeconds: Number.NaN }, { groupId: 'x'.repeat(300) }]) {
      const r = await link.pushReply('n1', reply(bad));
      expect(r.errorCode, JSON.stringify(bad)).toBe('MESSAGE_INVALID');
    }
    expect((await link.pushReply('n1', reply({}))).errorCode).toBeUndefined();
    const [stored] = await state.pullReplies(run.runId, ['i1']);
    expect(stored && 'payload' in stored).toBe(true);
    await state.close();
  });
});

describe('Control API admins', () => {
  it('admits only admin certificates of the SuperLink project', () => {
    const auth = controlBulkAuth({
      requireAdminCert: true,
      project: 'Pollen Demo',
      onKeyUnregistered: () => {},
    });
    const peer = (project: string, type: 'admin' | 'client') => ({
      project,
      type,
      name: 'a',
      serial: '01',
      fingerprint: 'sha256:00',
    });
    const call = (p: ReturnType<typeof peer>) => () =>
      auth({ method: 'PUT', id: '0'.repeat(64), headers: {}, peer: p } as unknown as Parameters<
        typeof auth
      >[0]);
    expect(call(peer('pollen-demo', 'admin'))).not.toThrow();
    for (const p of [peer('other', 'admin'), peer('pollen-demo', 'client')]) {
      try {
        call(p)();
        expect.unreachable();
      } catch (e) {
        expect(isPollenError(e) && e.code).toBe('PERMISSION_DENIED');
      }
    }
  });
});
