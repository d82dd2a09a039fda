/**
 * The fleet session against an in-memory Fleet API (Connect's router transport) on a ManualClock:
 * session renewal, heartbeats and what their answers do, reconnection with backoff and the poll
 * pacing, each over minutes or hours of the test's time in milliseconds of real time.
 */
import {
  createClient,
  createRouterTransport,
  type HandlerContext,
  type ServiceImpl,
} from '@connectrpc/connect';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../test/support/manual-clock.js';
import { PollenError } from '../errors.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { toConnectError } from '../transport/errors.js';
import type { SessionHolder } from './fleet-auth.js';
import { FleetSession, type FleetSessionOptions, type RunWatch } from './fleet-session.js';

const refuse = (code: string) => toConnectError(new PollenError(code as 'UNAVAILABLE', `refused: ${code}`));

/** A long poll that nothing answers: it ends when the node aborts it. */
const idlePoll = (_req: unknown, ctx: HandlerContext) =>
  new Promise<{ messages: [] }>((resolve) => {
    if (ctx.signal.aborted) resolve({ messages: [] });
    ctx.signal.addEventListener('abort', () => resolve({ messages: [] }), { once: true });
  });

const running: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of running.splice(0)) await stop();
});

function start(
  clock: ManualClock,
  fleet: Partial<ServiceImpl<typeof Fleet>>,
  o: Partial<FleetSessionOptions> = {},
) {
  const closing = new AbortController();
  const holder: SessionHolder = {};
  const events: string[] = [];
  const runs: RunWatch = {
    openRuns: () => [],
    reported: () => {},
    askUncovered: async () => {},
    nextAskAt: () => Number.POSITIVE_INFINITY,
  };
  const session = new FleetSession({
    fleet: createClient(
      Fleet,
      createRouterTransport((router) => router.service(Fleet, fleet)),
    ),
    holder,
    name: 'site-1',
    superlink: 'in-memory',
    heartbeatMs: 10_000,
    pollWaitMs: 20_000,
    pollMs: 500,
    time: { now: clock.now, sleep: clock.sleep, random: () => 0.5 },
    log: pino({ level: 'silent' }),
    signal: closing.signal,
    runs,
    onConnected: (id) => events.push(`connected ${id}`),
    onDisconnected: (error, retryInMs) => events.push(`${error.split(':')[0]}, retry in ${retryInMs}`),
    onRefused: (error) => events.push(`refused ${error.code}`),
    ...o,
  });
  const loops = session.run(async () => {});
  const stop = async () => {
    closing.abort();
    await loops;
  };
  running.push(stop);
  return { session, holder, events };
}

const newClock = () => new ManualClock({ start: 1_700_000_000_000, settleMs: 100 });

describe('node-key sessions', () => {
  it('are renewed with a quarter of their life left, on the ticker, while the poll waits', async () => {
    const clock = newClock();
    let activations = 0;
    const { session, holder, events } = start(clock, {
      activateNode: () => {
        activations++;
        return {
          nodeId: 'n1',
          session: {
            sessionId: `s${activations}`,
            secret: new Uint8Array(32),
            expiresAt: BigInt(clock.now() + 40_000),
          },
        };
      },
      heartbeat: () => ({ known: true }),
      pullMessages: idlePoll,
    });
    expect(await session.ready).toBe('n1');
    expect(holder.session?.sessionId).toBe('s1');
    await clock.advance(29_000);
    expect(activations).toBe(1);
    await clock.advance(1_000);
    expect([activations, holder.session?.sessionId]).toEqual([2, 's2']);
    await clock.advance(30_000);
    expect([activations, holder.session?.sessionId]).toEqual([3, 's3']);
    // A renewal is not a reconnection.
    expect(events).toEqual(['connected n1']);
  });

  it('are renewed again a second later while the SuperLink is away, not in a busy loop', async () => {
    const clock = newClock();
    const tries: number[] = [];
    const { session, events } = start(clock, {
      activateNode: () => {
        tries.push(clock.now());
        if (tries.length === 2 || tries.length === 3) throw refuse('UNAVAILABLE');
        return {
          nodeId: 'n1',
          session: { sessionId: 's', secret: new Uint8Array(32), expiresAt: BigInt(clock.now() + 40_000) },
        };
      },
      heartbeat: () => ({ known: true }),
      pullMessages: idlePoll,
    });
    await session.ready;
    const t0 = clock.now();
    await clock.advance(35_000);
    expect(tries.map((t) => t - t0)).toEqual([0, 30_000, 31_000, 32_000]);
    expect(events).toEqual(['connected n1']);
  });

  it('are renewed at most 10 minutes before they end', async () => {
    const clock = newClock();
    let activations = 0;
    const { session } = start(clock, {
      activateNode: () => {
        activations++;
        const expiresAt = BigInt(clock.now() + 3_600_000);
        return {
          nodeId: 'n1',
          session: { sessionId: `s${activations}`, secret: new Uint8Array(32), expiresAt },
        };
      },
      heartbeat: () => ({ known: true }),
      pullMessages: idlePoll,
    });
    await session.ready;
    await clock.advance(2_999_000);
    expect(activations).toBe(1);
    await clock.advance(1_000);
    expect(activations).toBe(2);
  });
});

describe('heartbeats', () => {
  it('go out once per interval naming the open runs (64 at most); the runs the answer says finished are reported', async () => {
    const clock = newClock();
    const beats: { at: number; runIds: string[] }[] = [];
    const reported: [string[], string[]][] = [];
    const asked: boolean[] = [];
    const open = Array.from({ length: 70 }, (_, i) => `run-${i}`);
    const { session } = start(
      clock,
      {
        activateNode: () => ({ nodeId: 'n1' }),
        heartbeat: (req) => {
          beats.push({ at: clock.now(), runIds: req.runIds });
          return { known: true, runsChecked: true, finishedRunIds: ['run-3'] };
        },
        pullMessages: idlePoll,
      },
      {
        runs: {
          openRuns: () => open,
          reported: (checked, finished) => void reported.push([checked, finished]),
          askUncovered: async (onHeartbeat) => void asked.push(onHeartbeat),
          nextAskAt: () => Number.POSITIVE_INFINITY,
        },
      },
    );
    await session.ready;
    const t0 = clock.now();
    await clock.advance(9_999);
    expect(beats).toEqual([]);
    await clock.advance(21_000);
    expect(beats.map((b) => b.at - t0)).toEqual([10_000, 20_000, 30_000]);
    expect(beats[0]!.runIds).toEqual(open.slice(0, 64));
    expect(reported[0]).toEqual([open.slice(0, 64), ['run-3']]);
    // From the first answer on, the runs are asked about only past what heartbeats name.
    expect(asked).toEqual([true, true, true]);
  });

  it('not answering run status (an older SuperLink): the runs are asked about when due', async () => {
    const clock = newClock();
    const asked: number[] = [];
    let askAt = Number.POSITIVE_INFINITY;
    const { session } = start(
      clock,
      {
        activateNode: () => ({ nodeId: 'n1' }),
        heartbeat: () => ({ known: true }),
        pullMessages: idlePoll,
      },
      {
        runs: {
          openRuns: () => ['run-1'],
          reported: () => {},
          askUncovered: async (onHeartbeat) => {
            expect(onHeartbeat).toBe(false);
            if (clock.now() >= askAt) {
              asked.push(clock.now());
              askAt = clock.now() + 5_000;
            }
          },
          nextAskAt: () => askAt,
        },
      },
    );
    await session.ready;
    const t0 = clock.now();
    await clock.advance(1_000);
    // A run opens: the ticker, asleep until the next heartbeat, is woken to plan again.
    askAt = clock.now() + 5_000;
    session.reschedule();
    await clock.advance(11_000);
    expect(asked.map((t) => t - t0)).toEqual([6_000, 11_000]);
  });

  it('answered "unknown node" re-activate the node at once, without a disconnection', async () => {
    const clock = newClock();
    let activations = 0;
    let beats = 0;
    const { session, events } = start(clock, {
      activateNode: () => ({ nodeId: `n${++activations}` }),
      heartbeat: () => ({ known: ++beats > 1 }),
      pullMessages: idlePoll,
    });
    await session.ready;
    await clock.advance(10_000);
    await vi.waitFor(() => expect(events).toEqual(['connected n1', 'connected n2']));
    expect(activations).toBe(2);
  });

  it('refused otherwise (INTERNAL) break the connection at once; refused for a while (UNAVAILABLE, RATE_LIMITED) do not', async () => {
    const clock = newClock();
    const answers = ['UNAVAILABLE', 'RATE_LIMITED', 'INTERNAL'];
    let activations = 0;
    const { session, events } = start(clock, {
      activateNode: () => ({ nodeId: `n${++activations}` }),
      heartbeat: () => {
        const code = answers.shift();
        if (code) throw refuse(code);
        return { known: true };
      },
      pullMessages: idlePoll,
    });
    await session.ready;
    await clock.advance(20_000);
    expect(events).toEqual(['connected n1']);
    await clock.advance(10_000);
    await vi.waitFor(() => expect(events).toEqual(['connected n1', 'INTERNAL, retry in 500']));
    await clock.advance(500);
    await vi.waitFor(() => expect(events.at(-1)).toBe('connected n2'));
  });
});

describe('the poll loop', () => {
  it('reconnects with doubling backoff (from 500 ms, at most 30 s) and starts over once connected', async () => {
    const clock = newClock();
    let refusals = 8;
    let pulls = 0;
    const { events } = start(clock, {
      activateNode: () => {
        if (refusals-- > 0) throw refuse('UNAVAILABLE');
        return { nodeId: 'n1' };
      },
      heartbeat: () => ({ known: true }),
      pullMessages: (req, ctx) => {
        // The first pull after connecting fails: the backoff starts again from 500 ms.
        if (++pulls === 1) throw refuse('UNAVAILABLE');
        return idlePoll(req, ctx);
      },
    });
    await vi.waitFor(() => expect(events).toHaveLength(1));
    const waits = [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000];
    for (const ms of waits) await clock.advance(ms);
    expect(events).toEqual([
      ...waits.map((ms) => `UNAVAILABLE, retry in ${ms}`),
      'connected n1',
      'UNAVAILABLE, retry in 500',
    ]);
    await clock.advance(500);
    await vi.waitFor(() => expect(events.at(-1)).toBe('connected n1'));
  });

  it('jitters each wait by ±25 %', async () => {
    for (const [random, first] of [
      [0, 375],
      [0.999_999, 625],
    ] as const) {
      const clock = newClock();
      const { events } = start(
        clock,
        {
          activateNode: () => {
            throw refuse('UNAVAILABLE');
          },
        },
        { time: { now: clock.now, sleep: clock.sleep, random: () => random } },
      );
      await vi.waitFor(() => expect(events).toEqual([`UNAVAILABLE, retry in ${first}`]));
    }
  });

  it('over the request rate, waits 500 ms and polls again on the same connection', async () => {
    const clock = newClock();
    let activations = 0;
    const pulls: number[] = [];
    const { session, events } = start(clock, {
      activateNode: () => ({ nodeId: `n${++activations}` }),
      heartbeat: () => ({ known: true }),
      pullMessages: (req, ctx) => {
        pulls.push(clock.now());
        if (pulls.length <= 2) throw refuse('RATE_LIMITED');
        return idlePoll(req, ctx);
      },
    });
    await session.ready;
    const t0 = clock.now();
    // Until the ticker and the poll loop (refused, backing off) both wait on the clock.
    await vi.waitFor(() => expect(clock.sleeping).toBe(2));
    await clock.advance(1_500);
    // Connected all along: no backoff to grow, each refusal waits the first step.
    expect(pulls.map((t) => t - t0)).toEqual([0, 500, 1_000]);
    expect(activations).toBe(1);
    expect(events).toEqual(['connected n1']);
  });

  it('over the request rate, waits as long as the SuperLink says (a fifth more at most, within 50 ms – 30 s)', async () => {
    const clock = newClock();
    const pulls: number[] = [];
    const told = [2_000, 600_000, 0];
    const { session, events } = start(clock, {
      activateNode: () => ({ nodeId: 'n1' }),
      heartbeat: () => ({ known: true }),
      pullMessages: (req, ctx) => {
        pulls.push(clock.now());
        const retryAfterMs = told[pulls.length - 1];
        if (retryAfterMs !== undefined)
          throw toConnectError(new PollenError('RATE_LIMITED', 'too fast', { data: { retryAfterMs } }));
        return idlePoll(req, ctx);
      },
    });
    await session.ready;
    const t0 = clock.now();
    await vi.waitFor(() => expect(clock.sleeping).toBe(2));
    await clock.advance(2_199);
    expect(pulls).toHaveLength(1);
    await clock.advance(1); // 2 s told, × 1.1 with random 0.5
    expect(pulls.map((t) => t - t0)).toEqual([0, 2_200]);
    await clock.advance(33_000); // 10 minutes told: cut to 30 s, × 1.1
    expect(pulls.map((t) => t - t0)).toEqual([0, 2_200, 35_200]);
    await clock.advance(55); // 0 ms told: not a busy loop, 50 ms × 1.1
    expect(pulls.map((t) => t - t0)).toEqual([0, 2_200, 35_200, 35_255]);
    expect(events).toEqual(['connected n1']);
  });

  it('with long polling off, polls once per poll interval', async () => {
    const clock = newClock();
    const pulls: number[] = [];
    const { session } = start(
      clock,
      {
        activateNode: () => ({ nodeId: 'n1' }),
        heartbeat: () => ({ known: true }),
        pullMessages: (req) => {
          expect(req.waitMs).toBe(0);
          pulls.push(clock.now());
          return { messages: [] };
        },
      },
      { pollWaitMs: 0 },
    );
    await session.ready;
    const t0 = clock.now();
    await vi.waitFor(() => expect(clock.sleeping).toBe(2));
    await clock.advance(2_000);
    expect(pulls.map((t) => t - t0)).toEqual([0, 500, 1_000, 1_500, 2_000]);
  });
});

describe('refusals no retry changes', () => {
  it('at activation (NODE_NOT_REGISTERED): the node stops, asks nothing more and says why', async () => {
    const clock = newClock();
    let activations = 0;
    const { session, events } = start(clock, {
      activateNode: () => {
        activations++;
        throw refuse('NODE_NOT_REGISTERED');
      },
    });
    await vi.waitFor(() => expect(events).toEqual(['refused NODE_NOT_REGISTERED']));
    await clock.advance(600_000);
    expect(activations).toBe(1);
    expect(session.refused?.code).toBe('NODE_NOT_REGISTERED');
    expect(clock.sleeping).toBe(0);
  });

  it('on a heartbeat (CERT_REVOKED): the waiting poll ends and the node stops', async () => {
    const clock = newClock();
    let pulls = 0;
    const { session, events } = start(clock, {
      activateNode: () => ({ nodeId: 'n1' }),
      heartbeat: () => {
        throw refuse('CERT_REVOKED');
      },
      pullMessages: (req, ctx) => {
        pulls++;
        return idlePoll(req, ctx);
      },
    });
    await session.ready;
    await clock.advance(10_000);
    await vi.waitFor(() => expect(events).toEqual(['connected n1', 'refused CERT_REVOKED']));
    await clock.advance(600_000);
    expect([pulls, session.connected]).toEqual([1, false]);
  });

  it('a failure on the way is read by `explain`: a TLS refusal stops the node, an outage is retried', async () => {
    const clock = newClock();
    const verdicts = ['UNAVAILABLE', 'CERT_NOT_ACCEPTED'] as const;
    let asked = 0;
    const { events } = start(
      clock,
      {
        activateNode: () => {
          throw new Error('socket hang up');
        },
      },
      { explain: async () => new PollenError(verdicts[asked++]!, 'explained') },
    );
    await vi.waitFor(() => expect(events).toEqual(['UNAVAILABLE, retry in 500']));
    await clock.advance(500);
    await vi.waitFor(() =>
      expect(events).toEqual(['UNAVAILABLE, retry in 500', 'refused CERT_NOT_ACCEPTED']),
    );
  });
});
