import { request } from 'node:https';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initCa, loadCa } from '../src/pki/ca.js';
import type { CertType } from '../src/pki/profiles.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { nodeIdFromIdentity } from '../src/superlink/node-identity.js';
import { type SuperLink, startSuperLink } from '../src/superlink/superlink.js';
import { loadTlsMaterial, type TlsMaterial } from '../src/transport/tls.js';
import { tempDir } from './support/cli.js';

// An independent gRPC implementation (grpc-js + proto-loader, reading the same .proto files)
// drives the Fleet API of an in-process SuperLink: the wire contract is the .proto files, not
// our generated code. A Connect JSON call over HTTP/1.1 shows the same server speaks both.

const PROTO_DIR = resolve(import.meta.dirname, '../proto');

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;
type Unary = (req: object, meta: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<unknown>) => void;

interface FleetStub extends grpc.Client {
  ActivateNode: Unary;
  DeactivateNode: Unary;
  Heartbeat: Unary;
  PullMessages: Unary;
  GetRun: Unary;
}

const pkg = protoLoader.loadSync(['pollen/v1/fleet.proto'], {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const loaded = grpc.loadPackageDefinition(pkg) as unknown as {
  pollen: {
    v1: {
      Fleet: new (address: string, creds: grpc.ChannelCredentials, options: grpc.ChannelOptions) => FleetStub;
    };
  };
};
const FleetClient = loaded.pollen.v1.Fleet;

function call<T>(stub: FleetStub, method: keyof FleetStub, req: object): Promise<T> {
  const fn = stub[method] as Unary;
  return new Promise<T>((res, rej) => {
    fn.call(stub, req, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, out) =>
      err ? rej(err) : res(out as T),
    );
  });
}

async function callError(stub: FleetStub, method: keyof FleetStub, req: object): Promise<grpc.ServiceError> {
  try {
    await call(stub, method, req);
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error(`${String(method)} unexpectedly succeeded`);
}

const t = tempDir('pollen-grpc-');
let link: SuperLink;
let fleetAddress = '';
let ca: Awaited<ReturnType<typeof loadCa>>;
let other: Awaited<ReturnType<typeof loadCa>>;
const stubs: FleetStub[] = [];

async function issue(
  from: Awaited<ReturnType<typeof loadCa>>,
  name: string,
  type: CertType,
  hosts?: string[],
): Promise<TlsMaterial> {
  const r = await createSiteCertificate(from, {
    name,
    type,
    outDir: join(from.dir, '..', 'certs', name),
    validityDays: 1,
    hosts,
  });
  return loadTlsMaterial({ cert: r.certPath, key: r.keyPath, ca: r.rootPath });
}

function stub(creds: grpc.ChannelCredentials): FleetStub {
  // Dial the IP, verify the server certificate's DNS name (an IP is no TLS server name).
  const s = new FleetClient(fleetAddress, creds, { 'grpc.ssl_target_name_override': 'localhost' });
  stubs.push(s);
  return s;
}

const ssl = (rootCa: string, m?: TlsMaterial) =>
  m
    ? grpc.credentials.createSsl(Buffer.from(rootCa), Buffer.from(m.key), Buffer.from(m.cert))
    : grpc.credentials.createSsl(Buffer.from(rootCa));

let siteA: TlsMaterial;

beforeAll(async () => {
  await initCa({ name: 'interop', dir: join(t.dir, 'main', 'ca'), keyType: 'ec-p256' });
  await initCa({ name: 'intruders', dir: join(t.dir, 'other', 'ca'), keyType: 'ec-p256' });
  ca = await loadCa(join(t.dir, 'main', 'ca'));
  other = await loadCa(join(t.dir, 'other', 'ca'));
  const server = await issue(ca, 'superlink', 'server', ['127.0.0.1', 'localhost']);
  siteA = await issue(ca, 'site-a', 'client');
  link = await startSuperLink({
    stateDir: join(t.dir, 'sl'),
    fleet: { host: '127.0.0.1', port: 0 },
    control: { host: '127.0.0.1', port: 0 },
    serverAppIo: { host: '127.0.0.1', port: 0 },
    tls: server,
    nodeAuth: false,
    log: pino({ level: 'silent' }),
  });
  fleetAddress = new URL(link.fleetUrl).host;
});

afterAll(async () => {
  for (const s of stubs) s.close();
  await link?.close();
  t.cleanup();
});

describe('Fleet API from grpc-js (mutual TLS)', () => {
  it('runs the node lifecycle: activate (stable id), heartbeat, pull, GetRun NOT_FOUND, deactivate', async () => {
    const fleet = stub(ssl(siteA.ca, siteA));
    const expectedId = nodeIdFromIdentity({ project: 'interop', type: 'client', name: 'site-a' });

    const first = await call<{ node_id: string; heartbeat_interval_ms: number; session: unknown }>(
      fleet,
      'ActivateNode',
      { heartbeat_interval_ms: 5_000, name: 'site-a-from-grpc' },
    );
    expect(first.node_id).toMatch(/^[0-9a-f]{16}$/);
    expect(first.node_id).toBe(expectedId);
    expect(first.heartbeat_interval_ms).toBeGreaterThan(0);
    expect(first.session).toBeNull(); // certificate mode: no node-key session
    const second = await call<{ node_id: string }>(fleet, 'ActivateNode', { heartbeat_interval_ms: 5_000 });
    expect(second.node_id).toBe(first.node_id);

    let node = link.state.listNodes().find((n) => n.nodeId === first.node_id);
    expect(node?.status).toBe('online');
    expect(node?.name).toBe('site-a'); // the certificate names the node, whatever the request said

    // (proto-loader fills in defaults: no run_ids asked about, so no run status either)
    expect(await call(fleet, 'Heartbeat', { heartbeat_interval_ms: 5_000 })).toEqual({
      known: true,
      finished_run_ids: [],
      runs_checked: false,
    });
    expect(await call(fleet, 'PullMessages', { max_messages: 8 })).toEqual({ messages: [] });

    const err = await callError(fleet, 'GetRun', { run_id: '00000000deadbeef' });
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.metadata.get('pollen-error-code')).toEqual(['RUN_NOT_FOUND']);
    expect(err.details).toContain('00000000deadbeef');

    expect(await call(fleet, 'DeactivateNode', {})).toEqual({});
    node = link.state.listNodes().find((n) => n.nodeId === first.node_id);
    expect(node?.status).toBe('offline');
    // the SuperLink no longer counts the node; a heartbeat says so, activation brings it back
    expect(await call(fleet, 'Heartbeat', { heartbeat_interval_ms: 5_000 })).toMatchObject({ known: false });
    expect(link.state.onlineNodeIds()).not.toContain(first.node_id);
    await call(fleet, 'ActivateNode', { heartbeat_interval_ms: 5_000 });
    expect(link.state.listNodes().find((n) => n.nodeId === first.node_id)?.status).toBe('online');
    await call(fleet, 'DeactivateNode', {});
  });

  it('refuses a client without a certificate at the handshake', async () => {
    const fleet = stub(ssl(siteA.ca));
    const err = await callError(fleet, 'Heartbeat', {});
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(err.metadata.get('pollen-error-code')).toEqual([]);
  });

  it('refuses a client certificate of another CA', async () => {
    const intruder = await issue(other, 'site-a', 'client');
    // the intruder trusts our server (our root), but presents a certificate of its own CA
    const fleet = stub(ssl(siteA.ca, { ...intruder, ca: siteA.ca }));
    const err = await callError(fleet, 'ActivateNode', {});
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    const intruderId = nodeIdFromIdentity({ project: 'intruders', type: 'client', name: 'site-a' });
    expect(link.state.listNodes().map((n) => n.nodeId)).not.toContain(intruderId);
  });

  it('refuses a certificate of the project that is not a client certificate', async () => {
    const admin = await issue(ca, 'admin', 'admin');
    const fleet = stub(ssl(admin.ca, admin));
    const err = await callError(fleet, 'ActivateNode', {});
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.metadata.get('pollen-error-code')).toEqual(['PERMISSION_DENIED']);
  });
});

describe('the same server speaks the Connect protocol (JSON over HTTP/1.1)', () => {
  function connectPost(
    path: string,
    body: string,
    m: TlsMaterial,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: string; protocol: string }> {
    const url = new URL(link.fleetUrl);
    return new Promise((res, rej) => {
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path,
          method: 'POST',
          cert: m.cert,
          key: m.key,
          ca: m.ca,
          servername: 'localhost',
          agent: false,
          headers: { 'content-type': 'application/json', 'connect-protocol-version': '1' },
          timeout: 10_000,
        },
        (r) => {
          let text = '';
          r.setEncoding('utf8');
          r.on('data', (d: string) => (text += d));
          r.on('end', () =>
            res({
              status: r.statusCode ?? 0,
              headers: r.headers,
              body: text,
              protocol: `HTTP/${r.httpVersion}`,
            }),
          );
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', rej);
      req.end(body);
    });
  }

  it('answers Heartbeat and reports errors with the Pollen code', async () => {
    const ok = await connectPost('/pollen.v1.Fleet/Heartbeat', '{}', siteA);
    expect(ok.protocol).toBe('HTTP/1.1');
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toContain('application/json');
    expect(JSON.parse(ok.body)).toEqual({}); // known=false: this node is deactivated, and false is the default

    await call(stub(ssl(siteA.ca, siteA)), 'ActivateNode', {});
    const known = await connectPost('/pollen.v1.Fleet/Heartbeat', '{"heartbeatIntervalMs":5000}', siteA);
    expect(JSON.parse(known.body)).toEqual({ known: true });

    const missing = await connectPost('/pollen.v1.Fleet/GetRun', '{"runId":"00000000deadbeef"}', siteA);
    expect(missing.status).toBe(404);
    expect(missing.headers['pollen-error-code']).toBe('RUN_NOT_FOUND');
    expect(JSON.parse(missing.body)).toMatchObject({ code: 'not_found' });
  });
});
