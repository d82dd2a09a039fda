/**
 * A node's reply is checked before it is stored: malformed metadata that would make the
 * ServerApp fail to rebuild the message is refused for that reply only; an error reply becomes a
 * line of its run's log. Admins of another project are refused by the Control API.
 */
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { linkStates } from '../../test/support/link-states.js';
import { instruction, runningRun } from '../../test/support/runs.js';
import { isPollenError } from '../errors.js';
import { MessageSchema } from '../gen/pollen/v1/records_pb.js';
import { DEFAULT_ACCESS_POLICY } from '../identity/rights.js';
import { controlBulkAuth } from './control-service.js';
import type { Link } from './link.js';

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

  it("writes each error reply into its run's log: which node, what, why, as one clipped line", async () => {
    const state = await open.state();
    const { link } = open.link(state);
    const runId = await runningRun(state, 'a');
    await state.activateNode({ nodeId: 'n1', name: 'n1', heartbeatIntervalMs: 10_000 });
    await state.pushInstructions(
      runId,
      ['i1', 'i2', 'i3'].map((id) => instruction(id, 'n1')),
    );
    const answer = (to: string, body: MessageInitShape<typeof MessageSchema>['body']) =>
      create(MessageSchema, {
        metadata: {
          runId,
          messageId: `r-${to}`,
          replyToMessageId: to,
          messageType: 'train',
          ttlSeconds: 10,
          createdAt: BigInt(Date.now()),
        },
        body,
      });
    const failed = (reason: string) => ({
      case: 'error' as const,
      value: { code: 'CLIENT_APP_RAISED_EXCEPTION', reason },
    });
    for (const r of [
      answer('i1', { case: 'content', value: { records: [] } }),
      // A node cannot forge lines of its own: its text stays on one line.
      answer('i2', failed('Error: disk full\nrun completed')),
      answer('i3', failed('x'.repeat(5000))),
    ])
      expect((await link.pushReply('n1', r)).errorCode).toBeUndefined();
    const lines = await state.readLogs(runId);
    expect(lines.map((l) => l.stream)).toEqual(['system', 'system']);
    expect(lines[0]!.text).toBe(
      'node n1 train failed: CLIENT_APP_RAISED_EXCEPTION: Error: disk full run completed',
    );
    expect(lines[1]!.text).toHaveLength(1200);
    expect(lines[1]!.text).toMatch(/^node n1 train failed: CLIENT_APP_RAISED_EXCEPTION: x+…$/);
  });
});

describe('Control API admins', () => {
  it('admits only admin certificates of the SuperLink project', async () => {
    const auth = controlBulkAuth(
      {
        requireAdminCert: true,
        project: 'Pollen Demo',
        policy: DEFAULT_ACCESS_POLICY,
        onKeyUnregistered: () => {},
      },
      {} as Link,
    );
    const peer = (project: string, type: 'admin' | 'client') => ({
      project,
      type,
      name: 'a',
      serial: '01',
      fingerprint: 'sha256:00',
    });
    const call = (p: ReturnType<typeof peer>) =>
      auth({ method: 'PUT', id: '0'.repeat(64), headers: {}, peer: p, authorization: [] });
    await expect(call(peer('pollen-demo', 'admin'))).resolves.toBeUndefined();
    for (const p of [peer('other', 'admin'), peer('pollen-demo', 'client')]) {
      const e = await call(p).catch((err: unknown) => err);
      expect(isPollenError(e) && e.code).toBe('PERMISSION_DENIED');
    }
  });
});
