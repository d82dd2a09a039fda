/**
 * An unexpected failure, on every path of an RPC server (a Connect route, a stream that fails
 * half-way, a fast route, the bulk chunk route), reaches its client as a bare INTERNAL with a
 * reference, and the server log holds the whole error under that reference.
 */
import http2 from 'node:http2';
import { Writable } from 'node:stream';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { MemoryChunkStore } from './chunks.js';
import { ERROR_CODE_HEADER } from './errors.js';
import { fastUnary } from './grpc-fast.js';
import { type RpcServer, startRpcServer } from './rpc-server.js';

const SECRET = 'ENOENT: no such file /var/lib/pollen/secret.db';
let server: RpcServer;
const logLines: { reference?: string; err?: { message?: string }; msg?: string }[] = [];

beforeAll(async () => {
  const log = pino(
    { level: 'error' },
    new Writable({
      write(chunk, _enc, done) {
        logLines.push(JSON.parse(String(chunk)));
        done();
      },
    }),
  );
  const boom = () => Object.assign(new Error(SECRET), { code: 'ENOENT' });
  const store = new MemoryChunkStore();
  store.get = async () => {
    throw boom();
  };
  server = await startRpcServer({
    log,
    host: '127.0.0.1',
    port: 0,
    routes: (r) =>
      r.service(Fleet, {
        getRun: () => {
          throw boom();
        },
        getFab: () => {
          throw new PollenError('BUNDLE_NOT_FOUND', 'No such bundle', { detail: SECRET });
        },
        async *pullChunks() {
          yield { id: 'x', data: new Uint8Array(1) };
          throw boom();
        },
      }),
    fast: [
      fastUnary(Fleet.method.heartbeat, () => {
        throw boom();
      }),
    ],
    bulk: { store, authorize: () => undefined },
  });
});
afterAll(() => server?.close());

/** The log line written under a reference, which the answer names. */
function logged(message: string): { reference?: string; err?: { message?: string } } {
  const reference = /reference ([0-9a-f]{10})/.exec(message)?.[1];
  expect(reference, message).toBeDefined();
  const line = logLines.find((l) => l.reference === reference);
  expect(line, `no log line for ${reference}`).toBeDefined();
  return line!;
}

function expectBareInternal(e: unknown): ConnectError {
  expect(e).toBeInstanceOf(ConnectError);
  const ce = e as ConnectError;
  expect(ce.code).toBe(Code.Internal);
  expect(ce.metadata.get(ERROR_CODE_HEADER)).toBe('INTERNAL');
  expect(ce.rawMessage).not.toContain('/var/lib');
  expect(ce.rawMessage).toMatch(/^INTERNAL: Internal error \(reference [0-9a-f]{10}\)$/);
  expect(logged(ce.rawMessage).err?.message).toBe(SECRET);
  return ce;
}

describe('the error boundary of an RPC server', () => {
  const client = () => createClient(Fleet, createGrpcTransport({ baseUrl: server.url }));

  it('answers a Connect route that throws unexpectedly with a reference, and logs the error under it', async () => {
    expectBareInternal(
      await client()
        .getRun({ runId: 'r' })
        .catch((e: unknown) => e),
    );
  });

  it('does the same for a stream that fails after its first message', async () => {
    const got: string[] = [];
    const e = await (async () => {
      for await (const c of client().pullChunks({ chunkIds: ['x'] })) got.push(c.id);
    })().catch((err: unknown) => err);
    expect(got).toEqual(['x']);
    expectBareInternal(e);
  });

  it('does the same on the fast gRPC path', async () => {
    // Heartbeat over gRPC takes the fast route (grpc-fast.ts), not Connect's pipeline.
    expectBareInternal(
      await client()
        .heartbeat({ heartbeatIntervalMs: 1 })
        .catch((err: unknown) => err),
    );
  });

  it('does the same on the bulk chunk route', async () => {
    const id = 'a'.repeat(64);
    const answer = await new Promise<{ status: number; body: string; code: unknown }>((resolve, reject) => {
      const session = http2.connect(server.url);
      const req = session.request({ ':method': 'GET', ':path': `/pollen.v1.chunks/${id}` });
      let status = 0;
      let code: unknown;
      let body = '';
      req.on('response', (h) => {
        status = Number(h[':status']);
        code = h[ERROR_CODE_HEADER];
      });
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        session.close();
        resolve({ status, body, code });
      });
      req.on('error', reject);
      req.end();
    });
    expect(answer.status).toBe(500);
    expect(answer.code).toBe('INTERNAL');
    expect(answer.body).not.toContain('/var/lib');
    expect(logged(JSON.parse(answer.body).message).err?.message).toBe(SECRET);
  });

  it('sends a PollenError as it is, without its detail and without logging it as internal', async () => {
    const before = logLines.length;
    const e = (await client()
      .getFab({ hash: 'sha256:x' })
      .catch((err: unknown) => err)) as ConnectError;
    expect(e.code).toBe(Code.NotFound);
    expect(e.rawMessage).toBe('BUNDLE_NOT_FOUND: No such bundle');
    expect(logLines.length).toBe(before);
  });
});
