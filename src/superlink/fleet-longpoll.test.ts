/**
 * PullMessages as a long poll (wait_ms), over the wire: a SuperLink (insecure mode, loopback) and
 * a raw Fleet client acting as one node. The waits themselves (their end, the 30 s cap, a node
 * leaving) are driven by a clock in fleet-service.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Client, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runningRun } from '../../test/support/runs.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { Message } from '../sdk/message.js';
import { RecordDict } from '../sdk/records.js';
import { fleetClientAuth } from '../supernode/fleet-auth.js';
import { openChannel, type RpcChannel } from '../transport/rpc-client.js';
import { messageToWire } from '../transport/wire.js';
import { type SuperLink, startSuperLink } from './superlink.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-longpoll-'));
let superlink: SuperLink;
let channel: RpcChannel;
let fleet: Client<typeof Fleet>;
let nodeId = '';
let runId = '';

beforeAll(async () => {
  const local = { host: '127.0.0.1', port: 0 };
  superlink = await startSuperLink({
    stateDir: join(dir, 'superlink'),
    fleet: local,
    control: local,
    serverAppIo: local,
    nodeAuth: false,
    log: pino({ level: 'silent' }),
  });
  channel = openChannel({
    baseUrl: superlink.fleetUrl,
    interceptors: [fleetClientAuth({ holder: {}, insecureName: 'poller' })],
    bulkHeaders: false,
  });
  fleet = channel.client(Fleet);
  ({ nodeId } = await fleet.activateNode({ heartbeatIntervalMs: 10_000, name: 'poller' }));
  runId = await runningRun(superlink.state, 'longpoll');
});

afterAll(async () => {
  channel?.close();
  await superlink?.close();
  rmSync(dir, { recursive: true, force: true });
});

function instruction(): ReturnType<typeof messageToWire>['wire'] {
  return messageToWire(
    Message.create({
      content: new RecordDict(),
      dstNodeId: nodeId,
      messageType: 'train',
      runId,
      ttlSeconds: 60,
    }),
  ).wire;
}

describe('PullMessages long poll (wait_ms)', () => {
  it('answers at once with wait_ms 0 (older nodes)', async () => {
    const t0 = performance.now();
    const { messages } = await fleet.pullMessages({ maxMessages: 4 });
    expect(messages).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it('delivers an instruction pushed while the node waits, at once', async () => {
    const t0 = performance.now();
    const pulled = fleet.pullMessages({ maxMessages: 4, waitMs: 20_000 });
    await new Promise((r) => setTimeout(r, 200));
    const [id] = await superlink.link.pushInstructions(runId, [instruction()]);
    const { messages } = await pulled;
    expect(messages.map((m) => m.metadata?.messageId)).toEqual([id]);
    expect(performance.now() - t0).toBeLessThan(5_000);
  });

  it('answers queued instructions without waiting', async () => {
    const [id] = await superlink.link.pushInstructions(runId, [instruction()]);
    const t0 = performance.now();
    const { messages } = await fleet.pullMessages({ maxMessages: 4, waitMs: 20_000 });
    expect(messages.map((m) => m.metadata?.messageId)).toEqual([id]);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it('ends the wait when the caller goes away', async () => {
    const { link } = superlink;
    const ac = new AbortController();
    const pulled = fleet.pullMessages({ maxMessages: 4, waitMs: 20_000 }, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 200));
    ac.abort();
    await expect(pulled).rejects.toThrow();
    // The SuperLink's side of the wait is gone too: nothing is left waiting for this node.
    await vi.waitFor(() => expect(link.instructions.count(nodeId)).toBe(0), { timeout: 5_000 });
  });

  it('reports finished (or unknown) runs on heartbeats that name them', async () => {
    const plain = await fleet.heartbeat({ heartbeatIntervalMs: 10_000 });
    expect(plain).toMatchObject({ known: true, runsChecked: false, finishedRunIds: [] });
    const res = await fleet.heartbeat({ heartbeatIntervalMs: 10_000, runIds: [runId, 'feedfacefeedface'] });
    expect(res).toMatchObject({ known: true, runsChecked: true, finishedRunIds: ['feedfacefeedface'] });
  });

  it('counts Fleet calls by method, and writes none of them to the audit trail', async () => {
    const before = superlink.fleetCalls.get('/pollen.v1.Fleet/Heartbeat');
    for (let i = 0; i < 3; i++) await fleet.heartbeat({ heartbeatIntervalMs: 10_000 });
    expect(superlink.fleetCalls.get('/pollen.v1.Fleet/Heartbeat')).toBe(before + 3);
    expect(superlink.fleetCalls.snapshot()['/pollen.v1.Fleet/ActivateNode']).toBe(1);
    expect(await superlink.audit.log.head()).toBeNull();
  });

  it('serves the same instructions to JSON clients (Connect protocol)', async () => {
    const json = createClient(
      Fleet,
      createConnectTransport({
        baseUrl: superlink.fleetUrl,
        httpVersion: '2',
        useBinaryFormat: false,
        interceptors: [fleetClientAuth({ holder: {}, insecureName: 'poller' })],
      }),
    );
    const [id] = await superlink.link.pushInstructions(runId, [instruction()]);
    const { messages } = await json.pullMessages({ maxMessages: 4, waitMs: 1_000 });
    expect(messages.map((m) => m.metadata?.messageId)).toEqual([id]);
    expect(messages[0]!.body.case).toBe('content');
  });
});
