/**
 * The RPC metrics on a real HTTP/2 server (rpc-server.ts): every answer counted once under its
 * route and the code its client saw (direct gRPC, Connect, an unknown path, a call cut short),
 * and the counts read at scrape time equal to a prom-client counter told of each answer.
 */
import http2 from 'node:http2';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import pino from 'pino';
import { Counter, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { fastUnary } from '../transport/grpc-fast.js';
import { type RpcServer, startRpcServer } from '../transport/rpc-server.js';
import { RpcMetrics } from './rpc-metrics.js';

const registry = new Registry();
const metrics = new RpcMetrics(registry);
let server: RpcServer;
/** Resolves a heartbeat that hangs (interval 99) when the test ends. */
let release: () => void = () => {};
const hanging = new Promise<void>((resolve) => {
  release = resolve;
});
let hangingArrived: () => void = () => {};
const arrived = new Promise<void>((resolve) => {
  hangingArrived = resolve;
});

beforeAll(async () => {
  const heartbeat = async (req: { heartbeatIntervalMs: number }) => {
    if (req.heartbeatIntervalMs === 13) throw new PollenError('NODE_UNKNOWN', 'No such node');
    if (req.heartbeatIntervalMs === 16) throw new PollenError('UNAUTHENTICATED', 'Who are you?');
    if (req.heartbeatIntervalMs === 99) {
      hangingArrived();
      await hanging;
    }
    return { known: true };
  };
  server = await startRpcServer({
    log: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
    routes: (r) =>
      r.service(Fleet, {
        heartbeat,
        // A stream that fails after a message: its status travels in the trailers.
        async *pullChunks() {
          yield {};
          throw new PollenError('NODE_UNKNOWN', 'No such node');
        },
      }),
    fast: [fastUnary(Fleet.method.heartbeat, heartbeat)],
    observe: metrics.observer('fleet'),
  });
});
afterAll(async () => {
  release();
  await server?.close();
});

/** The value of one sample of the exposition text, by name and exact labels; 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)\{([^}]*)\} (\S+)$/.exec(line);
    if (m?.[1] === name && m[2]!.split(',').sort().join(',') === want) return Number(m[3]);
  }
  return 0;
}

/** Until the server has seen every answer's 'close' (it follows the client's end closely). */
async function scrapeWhen(ready: (text: string) => boolean): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const text = await registry.metrics();
    if (ready(text)) return text;
    await new Promise((r) => setTimeout(r, 20));
  }
  return registry.metrics();
}

const drain = async (stream: AsyncIterable<unknown>): Promise<void> => {
  for await (const _ of stream);
};
const codeOf = async (call: Promise<unknown>): Promise<string> =>
  call.then(
    () => 'OK',
    (e) => Code[ConnectError.from(e).code],
  );

describe('RPC metrics on a live server', () => {
  it('counts each answer once under its method and the code its client saw (headers or trailers), with its latency', async () => {
    const grpc = createClient(Fleet, createGrpcTransport({ baseUrl: server.url }));
    const connect = createClient(
      Fleet,
      createConnectTransport({ baseUrl: server.url, httpVersion: '2', useBinaryFormat: false }),
    );
    const seen = [
      await codeOf(grpc.heartbeat({ heartbeatIntervalMs: 5 })), // the direct path: trailers
      await codeOf(grpc.heartbeat({ heartbeatIntervalMs: 13 })), // a trailers-only error
      await codeOf(connect.heartbeat({ heartbeatIntervalMs: 5 })), // Connect: HTTP 200
      await codeOf(grpc.heartbeat({ heartbeatIntervalMs: 16 })),
    ];
    expect(seen).toEqual(['OK', 'NotFound', 'OK', 'Unauthenticated']);
    expect(await codeOf(drain(grpc.pullChunks({})))).toBe('NotFound');

    const text = await scrapeWhen(
      (t) =>
        sample(t, 'pollen_rpc_server_handling_seconds_count', { api: 'fleet', method: 'Heartbeat' }) === 4 &&
        sample(t, 'pollen_rpc_server_handling_seconds_count', { api: 'fleet', method: 'PullChunks' }) === 1,
    );
    const handled = (code: string) =>
      sample(text, 'pollen_rpc_server_handled_total', { api: 'fleet', method: 'Heartbeat', code });
    expect([handled('OK'), handled('NotFound'), handled('Unauthenticated')]).toEqual([2, 1, 1]);
    expect(
      sample(text, 'pollen_rpc_server_handling_seconds_count', { api: 'fleet', method: 'Heartbeat' }),
    ).toBe(4);
    expect(
      sample(text, 'pollen_rpc_server_handling_seconds_bucket', {
        api: 'fleet',
        method: 'Heartbeat',
        le: '25',
      }),
    ).toBe(4);
    expect(
      sample(text, 'pollen_rpc_server_handled_total', {
        api: 'fleet',
        method: 'PullChunks',
        code: 'NotFound',
      }),
    ).toBe(1);
    expect(sample(text, 'pollen_auth_failures_total', { api: 'fleet', reason: 'unauthenticated' })).toBe(1);
  });

  it('counts a path it does not serve as `other`, and a call cut short before any answer as Canceled', async () => {
    const session = http2.connect(server.url);
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': '/nowhere.v1.X/Y?q=1' });
      stream.on('response', (h) => resolve(Number(h[':status'])));
      stream.on('error', reject);
      stream.resume();
      stream.end();
    });
    expect(status).toBe(404);
    const cut = session.request({
      ':method': 'POST',
      ':path': '/pollen.v1.Fleet/Heartbeat',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    cut.on('error', () => {});
    // A heartbeat with interval 99 (field 1, varint) hangs until the client gives up.
    cut.end(Buffer.from([0, 0, 0, 0, 2, 0x08, 99]));
    await arrived;
    cut.close(http2.constants.NGHTTP2_CANCEL);

    const text = await scrapeWhen(
      (t) =>
        sample(t, 'pollen_rpc_server_handled_total', {
          api: 'fleet',
          method: 'Heartbeat',
          code: 'Canceled',
        }) > 0,
    );
    session.close();
    expect(
      sample(text, 'pollen_rpc_server_handled_total', {
        api: 'fleet',
        method: 'other',
        code: 'Unimplemented',
      }),
    ).toBe(1);
    expect(
      sample(text, 'pollen_rpc_server_handled_total', {
        api: 'fleet',
        method: 'Heartbeat',
        code: 'Canceled',
      }),
    ).toBe(1);
    // No label value is the unknown path itself.
    expect(text).not.toContain('nowhere');
  });
});

describe('answers counted at scrape time', () => {
  it('read the same series and values as a prom-client counter told of each answer', async () => {
    const mine = new Registry();
    const rpc = new RpcMetrics(mine);
    const reference = new Registry();
    const calls = new Counter({
      name: 'pollen_rpc_server_handled_total',
      help: 'RPCs answered, by API, method and gRPC status code.',
      labelNames: ['api', 'method', 'code'],
      registers: [reference],
    });
    const answers: [api: string, path: string, code: number][] = [
      ['fleet', '/pollen.v1.Fleet/PullMessages', 0],
      ['fleet', '/pollen.v1.Fleet/PullMessages', 0],
      ['fleet', '/pollen.v1.Fleet/PushMessages', 14],
      ['control', '/pollen.v1.Control/StartRun', 7],
      ['fleet', 'chunks', 0],
      ['fleet', 'other', 12],
      // Not a gRPC code: counted as Unknown, as a client would read it.
      ['fleet', '/pollen.v1.Fleet/PushMessages', Number.NaN],
      ['fleet', '/pollen.v1.Fleet/PushMessages', 42],
    ];
    const observers = new Map<string, ReturnType<RpcMetrics['observer']>>();
    for (const [api, path, code] of answers) {
      const observe = observers.get(api) ?? rpc.observer(api);
      observers.set(api, observe);
      observe(path)(code, performance.now());
      const method = path.slice(path.lastIndexOf('/') + 1);
      calls.inc({ api, method, code: code === 0 ? 'OK' : (Code[code] ?? 'Unknown') });
    }
    // The same lines (a series' order in the text carries no meaning), and twice: a scrape's
    // reading does not add to the next one's.
    const lines = async (r: Registry) =>
      (await r.getSingleMetricAsString('pollen_rpc_server_handled_total')).split('\n').sort();
    for (let i = 0; i < 2; i++) expect(await lines(mine)).toEqual(await lines(reference));
  });
});
