/**
 * The direct gRPC path (grpc-fast.ts) on a real HTTP/2 server: answers and errors as gRPC
 * clients expect them, and everything it does not take still reaches Connect.
 */
import http2 from 'node:http2';
import { create, toBinary } from '@bufbuild/protobuf';
import { type Client, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { Fleet, HeartbeatRequestSchema } from '../gen/pollen/v1/fleet_pb.js';
import { fromConnectError } from './errors.js';
import { fastUnary } from './grpc-fast.js';
import { type RpcServer, startRpcServer } from './rpc-server.js';

let server: RpcServer;
const seen: string[] = [];

beforeAll(async () => {
  const heartbeat = async (req: { heartbeatIntervalMs: number }, via: string) => {
    seen.push(via);
    if (req.heartbeatIntervalMs === 13) throw new PollenError('NODE_UNKNOWN', 'No such node');
    return { known: req.heartbeatIntervalMs > 0 };
  };
  server = await startRpcServer({
    log: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
    routes: (r) => r.service(Fleet, { heartbeat: (req) => heartbeat(req, 'connect') }),
    fast: [fastUnary(Fleet.method.heartbeat, (req) => heartbeat(req, 'fast'))],
  });
});
afterAll(() => server?.close());

/** One raw gRPC call: status, headers, trailers and body. */
function rawCall(body: Buffer, headers: Record<string, string> = {}) {
  return new Promise<{ status: string; headers: http2.IncomingHttpHeaders; data: Buffer }>(
    (resolve, reject) => {
      const session = http2.connect(server.url);
      const stream = session.request({
        ':method': 'POST',
        ':path': '/pollen.v1.Fleet/Heartbeat',
        'content-type': 'application/grpc',
        te: 'trailers',
        ...headers,
      });
      const chunks: Buffer[] = [];
      let head: http2.IncomingHttpHeaders = {};
      let status = '';
      stream.on('response', (h) => {
        head = h;
        if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
      });
      stream.on('trailers', (t) => {
        status = String(t['grpc-status']);
      });
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => {
        session.close();
        resolve({ status, headers: head, data: Buffer.concat(chunks) });
      });
      stream.on('error', reject);
      stream.end(body);
    },
  );
}

const envelope = (msg: Uint8Array, flags = 0): Buffer => {
  const b = Buffer.alloc(5 + msg.byteLength);
  b[0] = flags;
  b.writeUInt32BE(msg.byteLength, 1);
  b.set(msg, 5);
  return b;
};

describe('the direct gRPC path', () => {
  it('answers gRPC clients, and leaves Connect and gRPC-Web JSON calls to Connect', async () => {
    const grpc: Client<typeof Fleet> = createClient(Fleet, createGrpcTransport({ baseUrl: server.url }));
    seen.length = 0;
    expect((await grpc.heartbeat({ heartbeatIntervalMs: 5 })).known).toBe(true);
    expect(seen).toEqual(['fast']);
    const connect = createClient(
      Fleet,
      createConnectTransport({ baseUrl: server.url, httpVersion: '2', useBinaryFormat: false }),
    );
    expect((await connect.heartbeat({ heartbeatIntervalMs: 5 })).known).toBe(true);
    expect(seen).toEqual(['fast', 'connect']);
  });

  it('turns a failure into the same gRPC error and Pollen code as Connect does', async () => {
    const grpc = createClient(Fleet, createGrpcTransport({ baseUrl: server.url }));
    const fail = await grpc.heartbeat({ heartbeatIntervalMs: 13 }).catch((e) => fromConnectError(e));
    expect(fail).toMatchObject({ code: 'NODE_UNKNOWN', message: 'No such node' });
    const raw = await rawCall(
      envelope(toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { heartbeatIntervalMs: 13 }))),
    );
    expect(raw.status).toBe('5'); // NOT_FOUND, in a trailers-only answer
    expect(raw.headers['pollen-error-code']).toBe('NODE_UNKNOWN');
  });

  it('refuses compressed, undecodable, cut-short and multi-message bodies with precise statuses', async () => {
    const msg = toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { heartbeatIntervalMs: 5 }));
    expect((await rawCall(envelope(msg))).status).toBe('0');
    expect((await rawCall(envelope(msg, 1))).status).toBe('12'); // UNIMPLEMENTED
    expect((await rawCall(envelope(Buffer.from([0xff, 0xff, 0xff])))).status).toBe('3'); // INVALID_ARGUMENT
    expect((await rawCall(envelope(msg).subarray(0, 3))).status).toBe('3');
    expect((await rawCall(Buffer.concat([envelope(msg), envelope(msg)]))).status).toBe('3');
    // A compressed request (grpc-encoding) is Connect's to answer, as before.
    seen.length = 0;
    await rawCall(envelope(msg), { 'grpc-encoding': 'gzip' });
    expect(seen).not.toContain('fast');
  });
});
