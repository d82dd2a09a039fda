/**
 * One site floods a real federation (the SuperLink and two SuperNodes as CLI processes, mutual
 * TLS on 127.0.0.1, the SuperLink's limits set by its flags) while an honest run goes on: the
 * flood is refused with a precise code at each limit, the run completes with the honest nodes,
 * and neither they nor the SuperLink notice.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet } from '../src/gen/pollen/v1/fleet_pb.js';
import { CHUNK_RUN_HEADER } from '../src/transport/bulk-protocol.js';
import { fromConnectError } from '../src/transport/errors.js';
import type { RpcChannel } from '../src/transport/rpc-client.js';
import { outcomeOf as codeOf } from './support/errors.js';
import {
  type Federation,
  finishedRun,
  type SuperNodeProc,
  startFederation,
  startRun,
  stopAll,
  waitFor,
} from './support/federation.js';
import { replyTo } from './support/fleet-client.js';

const MiB = 1024 * 1024;
let fed: Federation;
let honest: SuperNodeProc[];
let channel: RpcChannel;

beforeAll(async () => {
  fed = await startFederation('pollen-fedlimits-', {
    args: ['--node-chunk-quota', '8', '--node-rate', '20', '--node-burst', '200'],
  });
  honest = await Promise.all([0, 1].map((i) => fed.addNode(`honest-${i}`, i)));
  channel = await fed.fleetChannel('flooder');
}, 60_000);
afterAll(async () => {
  channel?.close();
  await fed?.close();
  await stopAll();
});

const fresh = (bytes: number): { id: string; data: Uint8Array } => {
  const data = randomBytes(bytes);
  return { id: createHash('sha256').update(data).digest('hex'), data };
};

describe('one site floods while an honest run goes on', () => {
  it('refuses the flood at each limit with its code; the run completes with the honest nodes', async () => {
    const fleet = channel.client(Fleet);
    // Online for two minutes without a heartbeat: the run's first round sends it work too.
    const { nodeId } = await fleet.activateNode({ heartbeatIntervalMs: 60_000, name: 'flooder' });
    const runId = await startRun(fed, ['size=300000', 'round-timeout=60']);
    const instruction = await waitFor(
      'the flooder to be sent work',
      async () => (await fleet.pullMessages({ maxMessages: 1, waitMs: 2_000 })).messages[0],
      30_000,
      0,
    );
    expect(instruction.metadata!.runId).toBe(runId);

    // 1. Chunks that name no run: never into the shared store.
    const shared = fresh(MiB);
    for (let i = 0; i < 3; i++)
      expect(await codeOf(channel.bulk!.put(shared.id, shared.data))).toBe('CHUNK_RUN_REQUIRED');
    expect((await fleet.missingChunks({ chunkIds: [shared.id] })).chunkIds).toEqual([shared.id]);

    // 2. Chunks into its scope of the run: up to its quota (8 × 1 MiB), then CHUNK_QUOTA_EXCEEDED.
    let stored = 0;
    let refusal = 'none';
    for (let i = 0; i < 64 && refusal === 'none'; i++) {
      const c = fresh(MiB);
      const code = await codeOf(channel.bulk!.put(c.id, c.data, undefined, { [CHUNK_RUN_HEADER]: runId }));
      if (code === 'ok') stored++;
      else refusal = code;
    }
    expect({ stored, refusal }).toEqual({ stored: 8, refusal: 'CHUNK_QUOTA_EXCEEDED' });

    // 3. Requests: past its burst and rate, RATE_LIMITED with when to retry.
    let served = 0;
    let limited: ReturnType<typeof fromConnectError> | undefined;
    const since = Date.now();
    for (let i = 0; i < 1_000 && !limited; i++)
      await fleet.heartbeat({ heartbeatIntervalMs: 60_000 }).then(
        () => served++,
        (e) => {
          limited = fromConnectError(e);
        },
      );
    expect(limited?.code).toBe('RATE_LIMITED');
    expect(limited?.message).toMatch(/retry in \d+ ms/);
    // The burst (200, less what it spent above) and what refilled at 20/s meanwhile.
    expect(served).toBeLessThanOrEqual(200 + Math.ceil((20 * (Date.now() - since)) / 1000));

    // It answers its instruction once its rate allows (as a failed node would).
    const reply = replyTo(instruction, nodeId, {
      case: 'error',
      value: { code: 'FLOODER', reason: 'no model from this site' },
    });
    await waitFor(
      'the flooder to reply',
      () => fleet.pushMessages({ messages: [reply] }).then(() => true),
      10_000,
      200,
    );
    await waitFor('the flooder to leave', () => fleet.deactivateNode({}).then(() => true), 10_000, 200);

    // The honest run completes: both rounds, from the honest nodes.
    const details = await finishedRun(fed, runId, 90_000);
    expect(details.run.subStatus, details.run.reason ?? '').toBe('completed');
    expect(details.rounds).toHaveLength(2);
    const honestIds = honest.map((n) => n.nodeId).sort();
    for (const round of details.rounds) expect([...round.nodes].sort()).toEqual(honestIds);
    // The honest nodes never met a limit; the SuperLink kept serving.
    for (const n of honest)
      expect(n.stderr()).not.toMatch(/RATE_LIMITED|QUOTA_EXCEEDED|STORAGE_FULL|REPLY_QUEUE_FULL/);
    expect(fed.link.alive()).toBe(true);
    expect(
      (await fed.nodeList())
        .filter((n) => n.status === 'online')
        .map((n) => n.nodeId)
        .sort(),
    ).toEqual(honestIds);
  }, 150_000);
});
