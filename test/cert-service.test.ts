import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkServerIdentity, connect, type PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPolicy } from '../src/enrollment/policy-load.js';
import { type RunningCertService, serviceUrl, startCertService } from '../src/enrollment/service/server.js';
import { issueToken, loadTokenSigner, type TokenSigner } from '../src/enrollment/token.js';
import { initCa } from '../src/pki/ca.js';
import { createCsrFromKey } from '../src/pki/csr.js';
import {
  API_KEY,
  expectAuditChain,
  opensslCsr,
  PENDING_POLICY,
  pollProof,
  STORE_BACKENDS,
} from './support/cert-service.js';
import { openssl, tempDir } from './support/cli.js';

// The Certificate Service over real HTTPS on 127.0.0.1, against SQLite and PostgreSQL: the
// whole path through TLS, races between connections and replicas, renewal over mutual TLS and
// restarts. Every other route behaviour is tested in-process in cert-service-routes.test.ts.

const t = tempDir('pollen-svc-');
const caDir = join(t.dir, 'ca');
let signer: TokenSigner;
let rootPem: string;

beforeAll(async () => {
  await initCa({ name: 'Service Test', dir: caDir });
  signer = loadTokenSigner(caDir);
  rootPem = readFileSync(join(caDir, 'rootCA.pem'), 'utf8');
  writeFileSync(join(t.dir, 'policy.yaml'), PENDING_POLICY);
});
afterAll(() => t.cleanup());

const csrFor = (cn: string) => opensslCsr(t.dir, cn);

function tokenFor(subject: string, o: { type?: 'client' | 'server' | 'user'; hosts?: string[] } = {}) {
  const policy = loadPolicy(join(t.dir, 'policy.yaml'));
  return issueToken(signer, { subject, type: o.type, hosts: o.hosts, policy }).token;
}

describe.each(STORE_BACKENDS)('Certificate Service on %s', (_backend, makeDb) => {
  let svc: RunningCertService;
  let database: string | undefined;
  let agent: Agent;
  const workspace = join(t.dir, `ws-${_backend}`);

  const start = async (o: { workspace?: string; database?: string } = {}) =>
    startCertService({
      caDir,
      workspace,
      database,
      ...o,
      host: '127.0.0.1',
      port: 0,
      apiKeys: [API_KEY],
      policyFile: join(t.dir, 'policy.yaml'),
      logger: false,
      tidyIntervalMs: 0,
    });

  beforeAll(async () => {
    database = await makeDb();
    svc = await start();
    agent = new Agent({ connect: { ca: rootPem }, connections: 64 });
  });
  afterAll(async () => {
    await svc.close();
    await agent.close();
  });

  async function call(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    o: { admin?: boolean; raw?: string; dispatcher?: Agent; port?: number } = {},
  ) {
    const headers: Record<string, string> = {};
    if (body !== undefined || o.raw !== undefined) headers['content-type'] = 'application/json';
    if (o.admin) headers.authorization = `Bearer ${API_KEY}`;
    const r = await request(`https://127.0.0.1:${o.port ?? svc.port}${path}`, {
      method,
      headers,
      body: o.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
      dispatcher: o.dispatcher ?? agent,
    });
    const text = await r.body.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text);
    } catch {
      json = { text };
    }
    return { status: r.statusCode, json: json as Record<string, any> };
  }

  it('enrolls a site whose rule approves, with a certificate OpenSSL verifies', async () => {
    const { csr } = csrFor('hospital-1');
    const r = await call('POST', '/v1/enroll', { token: tokenFor('hospital-1'), csr });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ status: 'issued', name: 'hospital-1', type: 'client' });
    const crt = join(t.dir, `${_backend}-h1.crt`);
    writeFileSync(crt, r.json.certificate + r.json.chain);
    expect(openssl(['verify', '-CAfile', join(caDir, 'rootCA.pem'), '-untrusted', crt, crt]).out).toContain(
      ': OK',
    );
    const text = openssl(['x509', '-in', crt, '-noout', '-text']).out;
    expect(text).toContain('TLS Web Client Authentication');
    expect(text).toContain('CN = hospital-1');
  });

  it('gives exactly one certificate for 50 concurrent uses of one single-use token', async () => {
    const token = tokenFor('hospital-race');
    // 50 different keys race for one token, as 50 copies of a leaked token would
    const csrs = Array.from({ length: 50 }, () => {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      return createCsrFromKey(privateKey, 'hospital-race');
    });
    const results = await Promise.all(csrs.map((csr) => call('POST', '/v1/enroll', { token, csr })));
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    const refused = results.filter((r) => r.status !== 200);
    expect(refused).toHaveLength(49);
    expect(refused.every((r) => r.json.error?.code === 'TOKEN_USED')).toBe(true);
    const enrolled = await call('GET', '/v1/enrolled', undefined, { admin: true });
    expect(enrolled.json.enrolled.filter((e: { name: string }) => e.name === 'hospital-race')).toHaveLength(
      1,
    );
  });

  it('gives a request one decision when two admins approve and two reject it at once, on two replicas', async () => {
    // A second service on the same store: a replica on PostgreSQL, a second process's view on SQLite.
    const replica = await start({
      workspace: `${workspace}-replica`,
      database: database ?? svc.databaseLocation,
    });
    try {
      const trials = 20;
      const ids: { id: string; name: string; holds: 'approved' | 'rejected' }[] = [];
      for (let i = 0; i < trials; i++) {
        const name = `decide-${i}`;
        const csr = createCsrFromKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, name);
        const p = await call('POST', '/v1/enroll', { token: tokenFor(name), csr });
        expect(p.status).toBe(202);
        const id = p.json.requestId as string;
        const decide = (verb: 'approve' | 'reject', port: number) =>
          call(
            'POST',
            `/v1/requests/${verb}`,
            verb === 'reject' ? { names: [id], reason: 'race' } : { names: [id] },
            { admin: true, port },
          ).then((r) => ({ verb, ...r }));
        const results = await Promise.all([
          decide('approve', svc.port),
          decide('reject', replica.port),
          decide('reject', svc.port),
          decide('approve', replica.port),
        ]);
        const winners = results.filter((r) => r.status === 200);
        expect(winners, JSON.stringify(results)).toHaveLength(1);
        const holds = winners[0]!.verb === 'approve' ? 'approved' : 'rejected';
        for (const loser of results.filter((r) => r.status !== 200)) {
          expect(loser.status).toBe(409);
          expect(loser.json.error).toMatchObject({
            code: 'REQUEST_ALREADY_DECIDED',
            requestId: id,
            decision: holds,
          });
        }
        ids.push({ id, name, holds });
      }
      // the store and the audit log both hold exactly the decision each winner was told
      const requests = (await call('GET', '/v1/requests?status=all', undefined, { admin: true })).json
        .requests;
      const enrolled = (await call('GET', '/v1/enrolled', undefined, { admin: true })).json.enrolled;
      const audit = (await call('GET', '/v1/audit?after=0&limit=10000', undefined, { admin: true })).json
        .entries;
      expectAuditChain(audit, []);
      for (const { id, name, holds } of ids) {
        expect(requests.find((r: { id: string }) => r.id === id).status).toBe(holds);
        expect(enrolled.filter((e: { name: string }) => e.name === name)).toHaveLength(
          holds === 'approved' ? 1 : 0,
        );
        const decisions = audit.filter(
          (e: { action: string; detail: { requestId?: string } }) =>
            (e.action === 'request.approved' || e.action === 'request.rejected') && e.detail.requestId === id,
        );
        expect(decisions.map((e: { action: string }) => e.action)).toEqual([`request.${holds}`]);
      }
    } finally {
      await replica.close();
    }
  });

  it('renews over mTLS, revokes, publishes the CRL and refuses a revoked certificate', async () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyPem = key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    writeFileSync(join(t.dir, 'renew.key'), keyPem);
    const csr = execFileSync('openssl', [
      'req',
      '-new',
      '-key',
      join(t.dir, 'renew.key'),
      '-subj',
      '/CN=hospital-renew',
    ]).toString();
    const first = await call('POST', '/v1/enroll', { token: tokenFor('hospital-renew'), csr });
    expect(first.status).toBe(200);
    const mtls = new Agent({
      connect: { ca: rootPem, cert: first.json.certificate + first.json.chain, key: keyPem },
    });
    const renewed = await call('POST', '/v1/renew', { csr }, { dispatcher: mtls });
    expect(renewed.status, JSON.stringify(renewed.json)).toBe(200);
    expect(renewed.json.serial).not.toBe(first.json.serial);
    expect(renewed.json.name).toBe('hospital-renew');
    // without a client certificate: refused
    expect((await call('POST', '/v1/renew', { csr })).json.error.code).toBe('FORBIDDEN');

    const revoked = await call(
      'POST',
      '/v1/revoke',
      { serials: [first.json.serial], reason: 'keyCompromise' },
      { admin: true },
    );
    expect(revoked.status).toBe(200);
    expect((await call('POST', '/v1/renew', { csr }, { dispatcher: mtls })).json.error.code).toBe(
      'CERT_REVOKED',
    );
    await mtls.close();

    const crl = await request(`https://127.0.0.1:${svc.port}/v1/crl`, { dispatcher: agent });
    const crlPem = await crl.body.text();
    expect(crlPem).toContain('BEGIN X509 CRL');
    writeFileSync(join(t.dir, 'crl.pem'), crlPem);
    writeFileSync(join(t.dir, 'revoked.crt'), first.json.certificate);
    writeFileSync(
      join(t.dir, 'bundle.pem'),
      rootPem + readFileSync(join(caDir, 'intermediateCA.pem'), 'utf8'),
    );
    const v = openssl([
      'verify',
      '-crl_check',
      '-CAfile',
      join(t.dir, 'bundle.pem'),
      '-CRLfile',
      join(t.dir, 'crl.pem'),
      join(t.dir, 'revoked.crt'),
    ]);
    expect(v.out).toContain('certificate revoked');
  });

  it('renews each certificate once, answers a retry with the same key alike, and revokes renewals with their parent', async () => {
    const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const first = await call('POST', '/v1/enroll', {
      token: tokenFor('hospital-chain'),
      csr: createCsrFromKey(createPrivateKey(keyPem), 'hospital-chain'),
    });
    expect(first.status).toBe(200);
    const mtls = new Agent({ connect: { ca: rootPem, cert: first.json.certificate, key: keyPem } });
    const newCsr = createCsrFromKey(privateKey, 'hospital-chain');
    const renewed = await call('POST', '/v1/renew', { csr: newCsr }, { dispatcher: mtls });
    expect(renewed.status, JSON.stringify(renewed.json)).toBe(200);
    // the same request again (an answer lost on the way) gets the same certificate
    const retry = await call('POST', '/v1/renew', { csr: newCsr }, { dispatcher: mtls });
    expect(retry.json.serial).toBe(renewed.json.serial);
    // but the old certificate cannot mint a second, different renewal
    const other = createCsrFromKey(
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
      'hospital-chain',
    );
    const again = await call('POST', '/v1/renew', { csr: other }, { dispatcher: mtls });
    expect(again.json.error.code).toBe('CERT_SUPERSEDED');
    await mtls.close();
    // revoking the original by serial revokes the renewal too
    await call('POST', '/v1/revoke', { serials: [first.json.serial] }, { admin: true });
    const list = await call('GET', '/v1/enrolled', undefined, { admin: true });
    const chain = list.json.enrolled.filter((e: { name: string }) => e.name === 'hospital-chain');
    expect(chain).toHaveLength(2);
    expect(chain.every((e: { revoked: boolean }) => e.revoked)).toBe(true);
  });

  it('renews server certificates too (they carry serverAuth only), naming the hosts of their token', async () => {
    const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    const r = await call('POST', '/v1/enroll', {
      token: tokenFor('superlink-1', { type: 'server', hosts: ['link.example.org', '10.9.8.7'] }),
      csr: createCsrFromKey(createPrivateKey(keyPem), 'superlink-1'),
    });
    expect(r.status).toBe(202); // servers wait for an admin under this policy
    await call('POST', '/v1/requests/approve', { names: ['superlink-1'] }, { admin: true });
    const cert = (
      await call('GET', '/v1/enrolled?type=server', undefined, { admin: true })
    ).json.enrolled.find((e: { name: string }) => e.name === 'superlink-1');
    const polled = await call('POST', r.json.pollUrl, pollProof(r.json.requestId, keyPem, Date.now()));
    expect(polled.json.serial).toBe(cert.serial);
    const mtls = new Agent({ connect: { ca: rootPem, cert: polled.json.certificate, key: keyPem } });
    const renewed = await call(
      'POST',
      '/v1/renew',
      { csr: createCsrFromKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'superlink-1') },
      { dispatcher: mtls },
    );
    await mtls.close();
    expect(renewed.status, JSON.stringify(renewed.json)).toBe(200);
    expect(renewed.json.type).toBe('server');
    // Held for an admin, then approved, then renewed: each certificate names the token's hosts.
    for (const pem of [polled.json.certificate, renewed.json.certificate])
      expect(new X509Certificate(pem).subjectAltName).toMatch(
        /^DNS:link\.example\.org, IP Address:10\.9\.8\.7, URI:pollen:/,
      );
  });

  it('loses no pending or enrolled state across a restart', async () => {
    const p = await call('POST', '/v1/enroll', {
      token: tokenFor('restart-1'),
      csr: csrFor('restart-1').csr,
    });
    expect(p.status).toBe(202);
    const enrolledBefore = (await call('GET', '/v1/enrolled', undefined, { admin: true })).json.enrolled;
    await svc.close();
    svc = await start();
    const pending = (await call('GET', '/v1/requests', undefined, { admin: true })).json.requests;
    expect(pending.map((r: { id: string }) => r.id)).toContain(p.json.requestId);
    expect((await call('GET', '/v1/enrolled', undefined, { admin: true })).json.enrolled).toEqual(
      enrolledBefore,
    );
    // a used token stays used after the restart
    const token = tokenFor('hospital-once');
    expect((await call('POST', '/v1/enroll', { token, csr: csrFor('hospital-once').csr })).status).toBe(200);
    await svc.close();
    svc = await start();
    expect(
      (await call('POST', '/v1/enroll', { token, csr: csrFor('hospital-once').csr })).json.error.code,
    ).toBe('TOKEN_USED');
  });

  it('recorded every change above in an unbroken audit chain', async () => {
    const entries = (await call('GET', '/v1/audit?after=0&limit=10000', undefined, { admin: true })).json
      .entries;
    expectAuditChain(
      entries,
      [
        'certificate.issued',
        'request.pending',
        'request.approved',
        'certificate.renewed',
        'certificate.revoked',
      ],
      'hospital-race', // the race gave one certificate, and the log says so once
    );
    expect((await call('GET', '/v1/audit')).status).toBe(401);
  });
});

describe('root CA offline', () => {
  it('runs the service from a CA folder without the root key', async () => {
    const online = join(t.dir, 'ca-online');
    cpSync(caDir, online, { recursive: true });
    rmSync(join(online, 'rootCA.key'));
    const svc = await startCertService({
      caDir: online,
      workspace: join(t.dir, 'ws-online'),
      host: '127.0.0.1',
      port: 0,
      apiKeys: [API_KEY],
      logger: false,
      tidyIntervalMs: 0,
    });
    const agent = new Agent({ connect: { ca: rootPem } });
    try {
      const r = await request(`https://127.0.0.1:${svc.port}/v1/enroll`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          token: issueToken(signer, { subject: 'hospital-offline', policy: loadPolicy() }).token,
          csr: csrFor('hospital-offline').csr,
        }),
        dispatcher: agent,
      });
      expect(r.statusCode).toBe(200);
      await r.body.dump();
    } finally {
      await agent.close();
      await svc.close();
    }
  });
});

describe('the URL the service announces', () => {
  it('is one its certificate is valid for: the listening address when it is a name, else the first name', async () => {
    expect(serviceUrl('0.0.0.0', ['localhost', '127.0.0.1'], 8443)).toBe('https://localhost:8443');
    expect(serviceUrl('::', ['certs.example.com'], 8443)).toBe('https://certs.example.com:8443');
    expect(serviceUrl('127.0.0.1', ['certs.example.com', '127.0.0.1'], 1)).toBe('https://127.0.0.1:1');
    expect(serviceUrl('0.0.0.0', ['::1'], 8443)).toBe('https://[::1]:8443');

    const svc = await startCertService({
      caDir,
      workspace: join(t.dir, 'ws-url'),
      host: '127.0.0.1',
      port: 0,
      apiKeys: [API_KEY],
      hostnames: ['certs.example.test', '10.0.0.5'],
      logger: false,
      tidyIntervalMs: 0,
    });
    try {
      const url = new URL(svc.url);
      expect(url.hostname).toBe('certs.example.test');
      // What a client of the announced URL checks: the chain, and the name against the SANs.
      const peer = await new Promise<PeerCertificate>((res, rej) => {
        const s = connect(
          { host: '127.0.0.1', port: svc.port, ca: rootPem, servername: url.hostname },
          () => {
            res(s.getPeerCertificate());
            s.end();
          },
        );
        s.on('error', rej);
      });
      expect(checkServerIdentity(url.hostname, peer)).toBeUndefined();
      expect(peer.subjectaltname).not.toContain('0.0.0.0');
    } finally {
      await svc.close();
    }
  });
});
