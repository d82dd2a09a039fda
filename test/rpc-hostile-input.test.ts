import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { join } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Control } from '../src/gen/pollen/v1/control_pb.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { type SuperLink, startSuperLink } from '../src/superlink/superlink.js';
import { startSuperNode } from '../src/supernode/supernode.js';
import { uploadChunks } from '../src/transport/chunk-transfer.js';
import { chunkId } from '../src/transport/chunks.js';
import { fromConnectError } from '../src/transport/errors.js';
import { openChannel } from '../src/transport/rpc-client.js';
import { startRpcServer } from '../src/transport/rpc-server.js';
import { loadTlsMaterial, type TlsMaterial } from '../src/transport/tls.js';
import { tempDir } from './support/cli.js';
import { makePki, type Pki } from './support/federation.js';

// Hostile and careless requests against a real SuperLink over mutual TLS, spoken at the level of
// HTTP/2 frames: each gets a precise answer, and the SuperLink keeps serving.

const t = tempDir('pollen-hostile-');
let pki: Pki;
let link: SuperLink;
let site: TlsMaterial;
let admin: TlsMaterial;

beforeAll(async () => {
  pki = await makePki(t.dir, 'hostile');
  site = loadTlsMaterial(await pki.cert('site-a'));
  admin = loadTlsMaterial(pki.admin);
  link = await startSuperLink({
    stateDir: join(t.dir, 'sl'),
    fleet: { host: '127.0.0.1', port: 0 },
    control: { host: '127.0.0.1', port: 0 },
    serverAppIo: { host: '127.0.0.1', port: 0 },
    tls: loadTlsMaterial(pki.server),
    nodeAuth: false,
    project: 'hostile',
    log: pino({ level: 'silent' }),
  });
});
afterAll(async () => {
  await link?.close();
  t.cleanup();
});

interface RawAnswer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
  ms: number;
}

/** One POST on a fresh HTTP/2 connection with the given client certificate. */
function post(
  base: string,
  path: string,
  body: Uint8Array,
  m: TlsMaterial,
  headers: Record<string, string>,
): Promise<RawAnswer> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const session = http2.connect(base, { ca: m.ca, cert: m.cert, key: m.key, servername: 'localhost' });
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': path, te: 'trailers', ...headers });
    let status = 0;
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
      head = h;
    });
    req.on('trailers', (h) => {
      trailers = h;
    });
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      session.close();
      // A gRPC answer without a body may come trailers-only: its status is then in the headers.
      const status_ = trailers['grpc-status'] === undefined ? head : trailers;
      resolve({
        status,
        headers: head,
        trailers: status_,
        body: Buffer.concat(parts),
        ms: Date.now() - started,
      });
    });
    req.on('error', reject);
    req.setTimeout(15_000, () => req.close(http2.constants.NGHTTP2_CANCEL));
    req.end(body);
  });
}

const envelope = (message: Uint8Array) => {
  const out = Buffer.alloc(5 + message.byteLength);
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, 5);
  return out;
};

const grpc = (base: string, path: string, message: Uint8Array, m: TlsMaterial, extra = {}) =>
  post(base, path, envelope(message), m, { 'content-type': 'application/grpc+proto', ...extra });

// Bytes that are no protobuf message: a lone tag, an invalid wire type, a length past the end.
const GARBAGE = [Buffer.from([0x08]), Buffer.from([0x0f, 0x01]), Buffer.from([0x12, 0x05, 0x61])];

describe('a request message that is not protobuf', () => {
  it('is answered INVALID_ARGUMENT (INVALID_REQUEST) over gRPC on every Connect-path method, never INTERNAL', async () => {
    const cases: [string, string, TlsMaterial][] = [
      [link.fleetUrl, '/pollen.v1.Fleet/ActivateNode', site],
      [link.fleetUrl, '/pollen.v1.Fleet/GetRun', site],
      [link.fleetUrl, '/pollen.v1.Fleet/GetFab', site],
      [link.fleetUrl, '/pollen.v1.Fleet/PullChunks', site],
      [link.fleetUrl, '/pollen.v1.Fleet/Heartbeat', site], // the fast path, for comparison
      [link.controlUrl, '/pollen.v1.Control/StartRun', admin],
      [link.controlUrl, '/pollen.v1.Control/ListRuns', admin],
      [link.controlUrl, '/pollen.v1.Control/StreamLogs', admin],
    ];
    for (const [base, path, m] of cases)
      for (const bytes of GARBAGE) {
        const r = await grpc(base, path, bytes, m);
        const what = `${path} ${bytes.toString('hex')} → ${JSON.stringify(r.trailers)}`;
        expect(r.status, what).toBe(200);
        expect(r.trailers['grpc-status'], what).toBe('3');
        expect(decodeURIComponent(String(r.trailers['grpc-message'])), what).toMatch(
          /request cannot be decoded/,
        );
        expect(r.trailers['pollen-error-code'], what).toBe('INVALID_REQUEST');
      }
  });

  it('is answered 400 invalid_argument over the Connect protocol and gRPC-Web', async () => {
    const connect = await post(link.fleetUrl, '/pollen.v1.Fleet/GetRun', GARBAGE[0]!, site, {
      'content-type': 'application/proto',
      'connect-protocol-version': '1',
    });
    expect(connect.status).toBe(400);
    expect(connect.headers['pollen-error-code']).toBe('INVALID_REQUEST');
    expect(JSON.parse(connect.body.toString())).toEqual({
      code: 'invalid_argument',
      message: 'INVALID_REQUEST: The GetRun request cannot be decoded',
    });

    const web = await post(link.controlUrl, '/pollen.v1.Control/StartRun', envelope(GARBAGE[1]!), admin, {
      'content-type': 'application/grpc-web+proto',
    });
    expect(web.status).toBe(200);
    expect(web.body[0]).toBe(0x80); // the trailer frame
    const trailer = web.body.subarray(5).toString();
    expect(trailer).toMatch(/grpc-status: 3\r\n/);
    expect(trailer).toMatch(/pollen-error-code: INVALID_REQUEST/);
  });

  it('leaves other errors and good requests as they were, and the SuperLink keeps serving', async () => {
    // a well-formed request for an unknown run is still NOT_FOUND with its own code
    const missing = await grpc(
      link.fleetUrl,
      '/pollen.v1.Fleet/GetRun',
      Buffer.from([0x0a, 0x01, 0x78]),
      site,
    );
    expect(missing.trailers['grpc-status']).toBe('5');
    expect(missing.trailers['pollen-error-code']).toBe('RUN_NOT_FOUND');
    const ok = await grpc(link.controlUrl, '/pollen.v1.Control/ListRuns', new Uint8Array(), admin);
    expect(ok.trailers['grpc-status']).toBe('0');
    const json = await post(link.fleetUrl, '/pollen.v1.Fleet/Heartbeat', Buffer.from('{}'), site, {
      'content-type': 'application/json',
    });
    expect(json.status).toBe(200);
  });
});

describe('StartRun with a bundle that is not a bundle', () => {
  it('is refused BUNDLE_INVALID (INVALID_ARGUMENT) for each way a bundle can be wrong, and nothing is started', async () => {
    const channel = openChannel({ baseUrl: link.controlUrl, tls: admin });
    const control = channel.client(Control);
    try {
      const junk = randomBytes(3000);
      const id = chunkId(junk);
      await uploadChunks(channel.chunks(control), new Map([[id, junk]]));
      const hash = `sha256:${createHash('sha256').update(junk).digest('hex')}`;
      const fabs = [
        { hash, size: 3000n, chunkIds: [id], name: 'junk', version: '1' }, // bytes that are no archive
        { hash: 'md5:abc', size: 3000n, chunkIds: [id], name: 'junk', version: '1' }, // no sha256 hash
        { hash, size: 2999n, chunkIds: [id], name: 'junk', version: '1' }, // size that does not add up
        { hash: `sha256:${'0'.repeat(64)}`, size: 3000n, chunkIds: [id], name: 'junk', version: '1' },
        { hash, size: 3000n, chunkIds: ['not-a-chunk-id'], name: 'junk', version: '1' },
        { hash, size: 1n << 60n, chunkIds: [id, id, id], name: 'junk', version: '1' },
      ];
      for (const fab of fabs) {
        const e = await control.startRun({ fab, federation: 'default' }).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(
          e,
          JSON.stringify(fab, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
        ).toBeInstanceOf(ConnectError);
        expect((e as ConnectError).code).toBe(Code.InvalidArgument);
        expect(['BUNDLE_INVALID', 'CHUNK_ID_INVALID']).toContain(fromConnectError(e).code);
      }
      expect((await control.listRuns({})).runs).toHaveLength(0);
    } finally {
      channel.close();
    }
  });
});

describe('a deadline longer than a timer can hold', () => {
  it('is clamped, not turned into a 1 ms deadline, on the gRPC fast path and the Connect path', async () => {
    const activated = await post(link.fleetUrl, '/pollen.v1.Fleet/ActivateNode', Buffer.from('{}'), site, {
      'content-type': 'application/json',
    });
    expect(activated.status).toBe(200);
    // PullMessages with wait_ms = 400 (field 2): a long poll that ends empty after 400 ms.
    const pull = Buffer.from([0x10, 0x90, 0x03]);
    const fast = await grpc(link.fleetUrl, '/pollen.v1.Fleet/PullMessages', pull, site, {
      'grpc-timeout': '99999999H',
    });
    expect(fast.trailers['grpc-status'], JSON.stringify(fast.trailers)).toBe('0');
    expect(fast.ms).toBeGreaterThanOrEqual(350);
    const slow = await post(
      link.fleetUrl,
      '/pollen.v1.Fleet/PullMessages',
      Buffer.from('{"waitMs":400}'),
      site,
      {
        'content-type': 'application/json',
        'connect-protocol-version': '1',
        'connect-timeout-ms': '9999999999',
      },
    );
    expect(slow.status, slow.body.toString()).toBe(200);
    expect(slow.ms).toBeGreaterThanOrEqual(350);
    // an honest short deadline still ends the call
    const short = await grpc(link.fleetUrl, '/pollen.v1.Fleet/PullMessages', pull, site, {
      'grpc-timeout': '50m',
    });
    expect(short.ms).toBeLessThan(350);
  });
});

describe('a SuperNode pointed at a peer of the project that is not a server', () => {
  it('stops with PEER_NOT_SERVER, not INTERNAL, and does not retry', async () => {
    // A relay certificate may serve TLS for 127.0.0.1, but it is no SuperLink.
    const relay = await createSiteCertificate(pki.ca, {
      name: 'relay-1',
      type: 'relay',
      outDir: join(t.dir, 'certs', 'relay-1'),
      validityDays: 1,
      hosts: ['127.0.0.1', 'localhost'],
    });
    const impostor = await startRpcServer({
      log: pino({ level: 'silent' }),
      host: '127.0.0.1',
      port: 0,
      tls: {
        ...loadTlsMaterial({ cert: relay.certPath, key: relay.keyPath, ca: relay.rootPath }),
        requireClientCert: true,
      },
      routes: () => {},
    });
    const retries: string[] = [];
    const node = await startSuperNode({
      superlink: impostor.url,
      tls: site,
      name: 'site-a',
      workDir: join(t.dir, 'node'),
      log: pino({ level: 'silent' }),
      onEvent: (e) => {
        if (e.kind === 'disconnected') retries.push(e.error);
      },
    });
    try {
      const err = await node.failed;
      expect([err.code, err.exitCode]).toEqual(['PEER_NOT_SERVER', 5]);
      expect(err.message).toMatch(
        /^The peer at .* is not a Pollen server: its certificate carries a relay identity/,
      );
      expect(retries).toEqual([]);
    } finally {
      await node.close();
      await impostor.close();
    }
  });
});
