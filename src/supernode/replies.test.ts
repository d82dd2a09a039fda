/**
 * Reply sending against an in-memory Fleet API on a ManualClock: what is retried, how long it
 * waits between tries, and when it gives up.
 */
import { createClient, createRouterTransport, type ServiceImpl } from '@connectrpc/connect';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../test/support/manual-clock.js';
import { PollenError } from '../errors.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { Message } from '../sdk/message.js';
import { RecordDict } from '../sdk/records.js';
import { rpcChunkTransport } from '../transport/chunk-rpc.js';
import { MemoryChunkStore } from '../transport/chunks.js';
import { toConnectError } from '../transport/errors.js';
import { messageToWire } from '../transport/wire.js';
import { Replies } from './replies.js';

const refuse = (code: string) => toConnectError(new PollenError(code as 'UNAVAILABLE', `refused: ${code}`));

function setup(fleet: Partial<ServiceImpl<typeof Fleet>>, session = { hasSession: false, renewals: 0 }) {
  const clock = new ManualClock({ start: 1_700_000_000_000, settleMs: 100 });
  const closing = new AbortController();
  const replied: (string | undefined)[] = [];
  const client = createClient(
    Fleet,
    createRouterTransport((router) => router.service(Fleet, fleet)),
  );
  const replies = new Replies({
    fleet: client,
    fleetChunks: rpcChunkTransport(client),
    chunks: new MemoryChunkStore(),
    session: {
      get hasSession() {
        return session.hasSession;
      },
      renew: async () => void session.renewals++,
    },
    nodeId: () => 'node-1',
    time: { now: clock.now, sleep: clock.sleep, random: () => 0.5 },
    log: pino({ level: 'silent' }),
    signal: closing.signal,
    onReply: (_runId, _messageId, error) => void replied.push(error),
  });
  const { wire: instruction } = messageToWire(
    Message.create({ content: new RecordDict(), dstNodeId: 'node-1', messageType: 'train', runId: 'run-1' }),
  );
  const reply = replies.error(instruction, 'CLIENT_APP_CRASHED', 'it ended');
  return { clock, closing, replies, replied, instruction, reply };
}

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: PollenError) => e.code,
  );

describe('replies', () => {
  it('answer the instruction they reply to, stamped with the node clock', () => {
    const { clock, instruction, reply } = setup({});
    expect(reply.metadata).toMatchObject({
      runId: 'run-1',
      srcNodeId: 'node-1',
      dstNodeId: instruction.metadata!.srcNodeId,
      replyToMessageId: instruction.metadata!.messageId,
      messageType: 'train',
      createdAt: BigInt(clock.now()),
    });
    expect(reply.body).toEqual({
      case: 'error',
      value: expect.objectContaining({ code: 'CLIENT_APP_CRASHED' }),
    });
  });

  it('are sent again while the SuperLink is away, 500 ms, 1 s, 2 s … apart, and given up after 5 retries', async () => {
    const tries: number[] = [];
    const { clock, replies, reply, replied } = setup({
      pushMessages: () => {
        tries.push(clock.now());
        throw refuse('UNAVAILABLE');
      },
    });
    const t0 = clock.now();
    const sent = codeOf(replies.push(reply));
    await vi.waitFor(() => expect(clock.sleeping).toBe(1));
    await clock.advance(15_500);
    expect(await sent).toBe('UNAVAILABLE');
    expect(tries.map((t) => t - t0)).toEqual([0, 500, 1_500, 3_500, 7_500, 15_500]);
    expect(replied).toEqual([]);
  });

  it('go through once the SuperLink is back, and say when it refused the message itself', async () => {
    let tries = 0;
    const { clock, replies, reply, replied } = setup({
      pushMessages: () => {
        if (++tries < 3) throw refuse('RATE_LIMITED');
        return { results: [{ errorCode: 'RUN_NOT_RUNNING', errorMessage: 'finished' }] };
      },
    });
    const sent = codeOf(replies.push(reply));
    await vi.waitFor(() => expect(clock.sleeping).toBe(1));
    await clock.advance(1_500);
    expect(await sent).toBe('ok');
    expect(replied).toEqual(['RUN_NOT_RUNNING']);
  });

  it("past the node's request rate, keep retrying at a short pause: more refusals than the SuperLink-away budget still deliver", async () => {
    const tries: number[] = [];
    const { clock, replies, reply, replied } = setup({
      pushMessages: () => {
        tries.push(clock.now());
        if (tries.length <= 12) throw refuse('RATE_LIMITED');
        return { results: [{}] };
      },
    });
    const sent = codeOf(replies.push(reply));
    for (let i = 0; i < 12; i++) {
      await vi.waitFor(() => expect(clock.sleeping).toBe(1));
      await clock.advance(375); // 500 ms × (0.5 + 0.5 × random 0.5)
    }
    expect(await sent).toBe('ok');
    expect(tries).toHaveLength(13);
    expect(tries.at(-1)! - tries[0]!).toBe(12 * 375);
    expect(replied).toEqual([undefined]); // delivered, no refusal of the message itself
  });

  it("past the node's request rate, wait as long as the SuperLink says before sending again", async () => {
    const tries: number[] = [];
    const { clock, replies, reply } = setup({
      pushMessages: () => {
        tries.push(clock.now());
        if (tries.length === 1)
          throw toConnectError(
            new PollenError('RATE_LIMITED', 'too fast', { data: { retryAfterMs: 4_000 } }),
          );
        return { results: [{}] };
      },
    });
    const sent = codeOf(replies.push(reply));
    await vi.waitFor(() => expect(clock.sleeping).toBe(1));
    await clock.advance(4_399);
    expect(tries).toHaveLength(1);
    await clock.advance(1); // 4 s told, × 1.1 with random 0.5
    expect(await sent).toBe('ok');
    expect(tries[1]! - tries[0]!).toBe(4_400);
  });

  it('after an expired node-key session, open a new one and are sent again at once', async () => {
    const session = { hasSession: true, renewals: 0 };
    let tries = 0;
    const { replies, reply } = setup(
      {
        pushMessages: () => {
          if (++tries === 1) throw refuse('NODE_SESSION_EXPIRED');
          return { results: [{}] };
        },
      },
      session,
    );
    expect(await codeOf(replies.push(reply))).toBe('ok');
    expect([tries, session.renewals]).toEqual([2, 1]);
  });

  it('are not sent again after a refusal that will not pass, nor once the node closes', async () => {
    const refused = setup({
      pushMessages: () => {
        throw refuse('MESSAGE_INVALID');
      },
    });
    expect(await codeOf(refused.replies.push(refused.reply))).toBe('MESSAGE_INVALID');

    let tries = 0;
    const closed = setup({
      pushMessages: () => {
        tries++;
        throw refuse('UNAVAILABLE');
      },
    });
    const sent = codeOf(closed.replies.push(closed.reply));
    await vi.waitFor(() => expect(closed.clock.sleeping).toBe(1));
    closed.closing.abort();
    expect(await sent).toBe('UNAVAILABLE');
    expect(tries).toBe(1);
  });
});
