/**
 * A node's reply is checked before it is stored: malformed metadata that would make the
 * ServerApp fail to rebuild the message is refused for that reply only. Admins of another
 * project are refused by the Control API.
 */
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { linkStates } from '../../test/support/link-states.js';
import { instruction, runningRun } from '../../test/support/runs.js';
import { isPollenError } from '../errors.js';
import { MessageSchema } from '../gen/pollen/v1/records_pb.js';
import { controlBulkAuth } from './control-service.js';

describe.each(storeBackends('reply'))('Link.pushReply on %s', (backend, makeUrl) => {
  const open = linkStates(backend, makeUrl, { now: Date.now });

  it('refuses a reply whose metadata the ServerApp could not read, and keeps the instruction open', async () => {
    const state = await open.state();
    const { link } = open.link(state);
    const runId = await runningRun(state, 'a');
    await state.activateNode({ nodeId: 'n1', name: 'n1', heartbeatIntervalMs: 10_000 });
    await state.pushInstructions(runId, [instruction('i1', 'n1', { groupId: 'g' })]);
    const reply = (patch: Record<string, unknown>) =>
      create(MessageSchema, {
        metadata: {
          runId,
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
    const [stored] = await state.pullReplies(runId, ['i1']);
    expect(stored && 'payload' in stored).toBe(true);
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
