import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadPolicy } from '../src/enrollment/policy-load.js';
import { verifyAuditChain } from '../src/enrollment/service/audit.js';
import { type RunningCertService, startCertService } from '../src/enrollment/service/server.js';
import { issueToken, loadTokenSigner, type TokenSigner } from '../src/enrollment/token.js';
import { initCa } from '../src/pki/ca.js';
import { createCsrFromKey } from '../src/pki/csr.js';
import { openssl, tempDir } from './support/cli.js';
import { createTestDatabase } from './support/postgres.js';

// The Certificate Service over real HTTPS on 127.0.0.1, against SQLite and PostgreSQL.

const t = tempDir('pollen-svc-');
const caDir = join(t.dir, 'ca');
const API_KEY = 'pollen_test_admin_key_0123456789abcdefghijklmnop';
let signer: TokenSigner;
let rootPem: string;

const PENDING_POLICY = `metadata:
  project: "test-federation"
  description: "hospitals auto, others wait"
  version: "2.0"
token:
  validity: 1d
  max_uses: 1
site:
  name_pattern: "*"
user:
  allowed_roles: [lead, member, org_admin]
  default_role: lead
approval:
  method: policy
  rules:
    - name: "blocked"
      match:
        site_name_pattern: "evil-*"
      action: reject
    - name: "hospitals-auto"
      match:
        site_name_pattern: "hospital-*"
        source_ips: ["127.0.0.0/8"]
      action: approve
    - name: "vpn-auto"
      match:
        site_name_pattern: "vpn-*"
        source_ips: ["10.20.0.0/16"]
      action: approve
    - name: "others-wait"
      match: {}
      action: pending
`;

beforeAll(async () => {
  await initCa({ name: 'Service Test', dir: caDir });
  signer = loadTokenSigner(caDir);
  rootPem = readFileSync(join(caDir, 'rootCA.pem'), 'utf8');
  writeFileSync(join(t.dir, 'policy.yaml'), PENDING_POLICY);
});
afterAll(() => t.cleanup());

function csrFor(cn: string, kind: 'p256' | 'p384' | 'rsa2048' | 'rsa1024' = 'p256') {
  const key = join(t.dir, `${randomUUID()}.key`);
  const args =
    kind === 'p256' || kind === 'p384'
      ? ['-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${kind === 'p256' ? 'P-256' : 'P-384'}`]
      : ['-newkey', `rsa:${kind === 'rsa2048' ? 2048 : 1024}`];
  const csr = execFileSync(
    'openssl',
    ['req', '-new', ...args, '-nodes', '-keyout', key, '-subj', `/CN=${cn}`],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  ).toString();
  return { csr, keyPem: readFileSync(key, 'utf8'), keyPath: key };
}

function tokenFor(
  subject: string,
  o: { type?: 'client' | 'user' | 'relay'; role?: string; policyFile?: string } = {},
) {
  return issueToken(signer, {
    subject,
    type: o.type,
    role: o.role,
    policy: loadPolicy(o.policyFile ?? join(t.dir, 'policy.yaml')),
  }).token;
}

const backends = [
  ['sqlite', async () => undefined],
  [
    'postgres',
    async () => createTestDatabase(inject('postgresUrl'), `svc_${randomUUID().replaceAll('-', '')}`),
  ],
] as const;

describe.each(backends)('Certificate Service on %s', (_backend, makeDb) => {
  let svc: RunningCertService;
  let database: string | undefined;
  let agent: Agent;
  const workspace = join(t.dir, `ws-${_backend}`);

  const start = async () =>
    startCertService({
      caDir,
      workspace,
      database,
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

  it('answers a retry with the same token and key with what the first attempt produced', async () => {
    const token = tokenFor('hospital-retry');
    const { csr } = csrFor('hospital-retry');
    const first = await call('POST', '/v1/enroll', { token, csr });
    const again = await Promise.all([1, 2, 3].map(() => call('POST', '/v1/enroll', { token, csr })));
    expect(again.map((r) => r.json.serial)).toEqual([
      first.json.serial,
      first.json.serial,
      first.json.serial,
    ]);
    // another key with the same token is a replay
    expect(
      (await call('POST', '/v1/enroll', { token, csr: csrFor('hospital-retry').csr })).json.error.code,
    ).toBe('TOKEN_USED');
    // a pending request is resumed the same way, never duplicated
    const pToken = tokenFor('lab-retry');
    const p = csrFor('lab-retry');
    const a = await call('POST', '/v1/enroll', { token: pToken, csr: p.csr });
    const b = await call('POST', '/v1/enroll', { token: pToken, csr: p.csr });
    expect(b.status).toBe(202);
    expect(b.json.requestId).toBe(a.json.requestId);
  });

  it('takes the role from the token and refuses fields that try to set it', async () => {
    const { csr } = csrFor('lead@example.com');
    const token = tokenFor('lead@example.com', { type: 'user', role: 'member' });
    const sneaky = await call('POST', '/v1/enroll', { token, csr, role: 'project_admin', type: 'server' });
    expect(sneaky.status).toBe(400);
    expect(sneaky.json.error.code).toBe('INVALID_REQUEST');
    // the refused attempt did not consume the token
    const r = await call('POST', '/v1/enroll', { token, csr });
    expect(r.json).toMatchObject({ status: 'pending' });
    const approved = await call(
      'POST',
      '/v1/requests/approve',
      { names: ['lead@example.com'] },
      { admin: true },
    );
    expect(approved.status).toBe(200);
    const list = await call('GET', '/v1/enrolled?type=admin', undefined, { admin: true });
    expect(list.json.enrolled.find((e: { name: string }) => e.name === 'lead@example.com')).toMatchObject({
      type: 'admin',
      role: 'member',
      approvedBy: expect.stringMatching(/^api-key:/),
    });
  });

  it('checks the token before anything else and reveals nothing to a bad token', async () => {
    const before = await call('GET', '/v1/requests?status=all', undefined, { admin: true });
    const { csr } = csrFor('someone-else');
    const good = tokenFor('lab-7');
    const tampered = `${good.split('.')[0]}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(good.split('.')[1]!, 'base64url').toString()), sub: 'hospital-x' })).toString('base64url')}.${good.split('.')[2]}`;
    for (const token of ['', 'not-a-jwt', tampered, good.slice(0, -4) + 'AAAA']) {
      const r = await call('POST', '/v1/enroll', { token, csr });
      expect(r.status).toBe(401);
      expect(r.json.error).toEqual({
        code: 'TOKEN_INVALID',
        message: 'The enrollment token is invalid',
        hint: expect.any(String),
      });
    }
    // a valid token with a CSR for another name: only now is the CSR looked at
    const mismatch = await call('POST', '/v1/enroll', { token: good, csr });
    expect(mismatch.json.error.code).toBe('CSR_SUBJECT_MISMATCH');
    const after = await call('GET', '/v1/requests?status=all', undefined, { admin: true });
    expect(after.json.requests).toHaveLength(before.json.requests.length);
  });

  it('keeps each pending request, polls it with proof of possession, approves by pattern and rejects with a reason', async () => {
    const a = csrFor('lab-1');
    const b = csrFor('lab-1');
    const ra = await call('POST', '/v1/enroll', { token: tokenFor('lab-1'), csr: a.csr });
    const rb = await call('POST', '/v1/enroll', { token: tokenFor('lab-1'), csr: b.csr });
    expect(ra.status).toBe(202);
    expect(rb.status).toBe(202);
    expect(ra.json.requestId).not.toBe(rb.json.requestId);
    const pending = await call('GET', '/v1/requests', undefined, { admin: true });
    const ids = pending.json.requests
      .filter((r: { name: string }) => r.name === 'lab-1')
      .map((r: { id: string }) => r.id);
    expect(ids).toEqual(expect.arrayContaining([ra.json.requestId, rb.json.requestId]));

    const proof = (id: string, keyPem: string, ts = Date.now()) => ({
      timestamp: ts,
      signature: sign('sha256', Buffer.from(`pollen-poll:v1:${id}:${ts}`), keyPem).toString('base64'),
    });
    const stillPending = await call('POST', ra.json.pollUrl, proof(ra.json.requestId, a.keyPem));
    expect(stillPending.status).toBe(202);
    // someone else's key, an old timestamp, an unknown id: all refused alike
    const wrongKey = await call('POST', ra.json.pollUrl, proof(ra.json.requestId, b.keyPem));
    expect(wrongKey.status).toBe(401);
    expect(wrongKey.json.error.code).toBe('PROOF_INVALID');
    expect(
      (await call('POST', ra.json.pollUrl, proof(ra.json.requestId, a.keyPem, Date.now() - 3_600_000)))
        .status,
    ).toBe(401);
    expect(
      (await call('POST', '/v1/requests/req_nope/status', proof('req_nope', a.keyPem))).json.error.code,
    ).toBe('PROOF_INVALID');

    const approved = await call(
      'POST',
      '/v1/requests/approve',
      { names: [ra.json.requestId] },
      { admin: true },
    );
    expect(approved.json.approved).toHaveLength(1);
    const issued = await call('POST', ra.json.pollUrl, proof(ra.json.requestId, a.keyPem));
    expect(issued.status).toBe(200);
    expect(issued.json).toMatchObject({ status: 'issued', name: 'lab-1' });

    const rejected = await call(
      'POST',
      '/v1/requests/reject',
      { names: [rb.json.requestId], reason: 'Not authorized' },
      { admin: true },
    );
    expect(rejected.status).toBe(200);
    const r = await call('POST', rb.json.pollUrl, proof(rb.json.requestId, b.keyPem));
    expect(r.status).toBe(403);
    expect(r.json.error).toMatchObject({ code: 'ENROLLMENT_REJECTED', reason: 'Not authorized' });
    // decided requests cannot be decided again, and the admin is told which decision holds
    const again = await call('POST', '/v1/requests/approve', { names: [rb.json.requestId] }, { admin: true });
    expect(again.status).toBe(409);
    expect(again.json.error).toMatchObject({
      code: 'REQUEST_ALREADY_DECIDED',
      requestId: rb.json.requestId,
      decision: 'rejected',
      decidedBy: expect.any(String),
    });
    expect(again.json.error.message).toContain('already rejected');
    const byName = await call(
      'POST',
      '/v1/requests/reject',
      { names: ['lab-1'], reason: 'x' },
      { admin: true },
    );
    expect(byName.json.error).toMatchObject({ code: 'REQUEST_ALREADY_DECIDED', name: 'lab-1' });
    const unknown = await call('POST', '/v1/requests/approve', { names: ['never-asked'] }, { admin: true });
    expect(unknown.json.error.code).toBe('REQUEST_NOT_FOUND');

    // bulk approval by pattern and type
    for (const n of ['lab-20', 'lab-21', 'other-1'])
      await call('POST', '/v1/enroll', { token: tokenFor(n), csr: csrFor(n).csr });
    const bulk = await call(
      'POST',
      '/v1/requests/approve',
      { pattern: 'lab-2*', type: 'client' },
      { admin: true },
    );
    expect(bulk.json.approved.map((x: { name: string }) => x.name).sort()).toEqual(['lab-20', 'lab-21']);
  });

  it('gives a request one decision when two admins approve and two reject it at once, on two replicas', async () => {
    // A second service on the same store: a replica on PostgreSQL, a second process's view on SQLite.
    const replica = await startCertService({
      caDir,
      workspace: `${workspace}-replica`,
      database: database ?? svc.databaseLocation,
      host: '127.0.0.1',
      port: 0,
      apiKeys: [API_KEY],
      policyFile: join(t.dir, 'policy.yaml'),
      logger: false,
      tidyIntervalMs: 0,
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
      expect(verifyAuditChain(audit)).toMatchObject({ ok: true });
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

  it('applies reject rules without consuming the token', async () => {
    const r = await call('POST', '/v1/enroll', { token: tokenFor('evil-1'), csr: csrFor('evil-1').csr });
    expect(r.status).toBe(403);
    // the site learns that it was refused, not how the policy is written
    expect(r.json.error).toEqual({
      code: 'ENROLLMENT_REJECTED',
      message: "Enrollment refused by the project's policy",
      hint: expect.any(String),
    });
  });

  it('accepts OpenSSL CSRs with P-384 and RSA-2048 keys and refuses RSA-1024', async () => {
    for (const [kind, name] of [
      ['p384', 'hospital-p384'],
      ['rsa2048', 'hospital-rsa'],
    ] as const) {
      const r = await call('POST', '/v1/enroll', { token: tokenFor(name), csr: csrFor(name, kind).csr });
      expect(r.status, JSON.stringify(r.json)).toBe(200);
    }
    const weak = await call('POST', '/v1/enroll', {
      token: tokenFor('hospital-weak'),
      csr: csrFor('hospital-weak', 'rsa1024').csr,
    });
    expect(weak.status).toBe(400);
    expect(weak.json.error.code).toBe('KEY_TOO_WEAK');
  });

  it('answers malformed input of every kind with a 4xx and keeps serving', async () => {
    const token = tokenFor('hospital-fuzz');
    const { csr } = csrFor('hospital-fuzz');
    // flip a bit inside the signed request info: the signature must no longer verify
    const der = Buffer.from(csr.replace(/-----[^-]+-----|\s+/g, ''), 'base64');
    der[20] = der[20]! ^ 0x01;
    const tamperedCsr = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    const cases: [unknown, string?][] = [
      [undefined, '{'],
      [undefined, '[]'],
      [undefined, 'null'],
      [undefined, '"str"'],
      [undefined, 'x'.repeat(70_000)],
      [{}],
      [{ token }],
      [{ token, csr: 42 }],
      [{ token, csr: 'hello' }],
      [{ token, csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' }],
      [{ token, csr: tamperedCsr }],
      [{ token, csr: csr.repeat(20) }],
      [{ token: { a: 1 }, csr }],
      [{ token: 'x'.repeat(10_000), csr }],
    ];
    for (const [body, raw] of cases) {
      const r = await call('POST', '/v1/enroll', body, { raw });
      expect(
        r.status,
        `${raw?.slice(0, 20) ?? JSON.stringify(body).slice(0, 80)} → ${JSON.stringify(r.json)}`,
      ).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.json.error?.code).toMatch(/^[A-Z_]+$/);
    }
    expect((await call('POST', '/v1/enroll', { token, csr: tamperedCsr })).json.error.code).toMatch(
      /^CSR_(SIGNATURE_)?INVALID$/,
    );
    expect((await call('GET', '/v1/nope')).json.error.code).toBe('ROUTE_NOT_FOUND');
    expect((await call('GET', '/v1/health')).json.status).toBe('ok');
    // the token survived all of that unconsumed
    expect((await call('POST', '/v1/enroll', { token, csr })).status).toBe(200);
  });

  it('refuses token subjects outside the name rules even when the token key signed them, and CSRs with two common names', async () => {
    // A token made by hand with the real token key: only the name rules stand between it and a certificate.
    const forge = (sub: string) => {
      const [h, p] = tokenFor('hospital-forge').split('.') as [string, string];
      const claims = { ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub, jti: randomUUID() };
      const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
      const sig = sign('sha256', Buffer.from(`${h}.${body}`), {
        key: signer.privateKey,
        dsaEncoding: 'ieee-p1363',
      }).toString('base64url');
      return `${h}.${body}.${sig}`;
    };
    for (const name of [
      'hospital-x/../../y',
      'hospital-ü',
      'hospital-a,URI:pollen://test-federation/admin/root',
      'hospital-a\nCN=b',
      `hospital-${'a'.repeat(64)}`,
    ]) {
      const csr = createCsrFromKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, name);
      const r = await call('POST', '/v1/enroll', { token: forge(name), csr });
      expect(r.status, `${JSON.stringify(name)} → ${JSON.stringify(r.json)}`).toBe(401);
      expect(r.json.error.code).toBe('TOKEN_INVALID');
      expect(r.json.error.message).toContain('not a valid client name');
    }
    // the same hand-made token with a good name works: the refusals above are the name rules
    const fine = await call('POST', '/v1/enroll', {
      token: forge('hospital-forged-ok'),
      csr: csrFor('hospital-forged-ok').csr,
    });
    expect(fine.status).toBe(200);

    // a CSR whose subject holds two CNs, the first one the token's
    const key = join(t.dir, `${randomUUID()}.key`);
    const twoCn = execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
      ].concat(['-subj', '/CN=hospital-two-cn/CN=hospital-other']),
      { stdio: ['ignore', 'pipe', 'ignore'] },
    ).toString();
    const r = await call('POST', '/v1/enroll', { token: tokenFor('hospital-two-cn'), csr: twoCn });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({
      code: 'CSR_INVALID',
      message: 'The CSR subject has 2 common names',
    });
  });

  it('refuses a revocation whose reason is not a short string and revokes nothing', async () => {
    const name = 'hospital-revoke-reason';
    expect((await call('POST', '/v1/enroll', { token: tokenFor(name), csr: csrFor(name).csr })).status).toBe(
      200,
    );
    for (const reason of [{ code: 1 }, 42, ['keyCompromise'], 'x'.repeat(201)]) {
      const r = await call('POST', '/v1/revoke', { names: [name], reason }, { admin: true });
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({
        code: 'INVALID_REQUEST',
        message: expect.stringContaining('`reason`'),
      });
    }
    const enrolled = (await call('GET', '/v1/enrolled', undefined, { admin: true })).json.enrolled;
    expect(enrolled.find((e: { name: string }) => e.name === name).revoked).toBe(false);
    const ok = await call('POST', '/v1/revoke', { names: [name], reason: 'keyCompromise' }, { admin: true });
    expect(ok.json.revoked).toHaveLength(1);
  });

  it('requires the admin API key', async () => {
    const none = await call('GET', '/v1/requests');
    expect(none.status).toBe(401);
    expect(none.json.error.code).toBe('API_KEY_REQUIRED');
    const r = await request(`https://127.0.0.1:${svc.port}/v1/enrolled`, {
      headers: { authorization: 'Bearer wrong' },
      dispatcher: agent,
    });
    expect(r.statusCode).toBe(401);
    expect(((await r.body.json()) as { error: { code: string } }).error.code).toBe('API_KEY_INVALID');
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

  it('renews server certificates too (they carry serverAuth only)', async () => {
    const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    const token = issueToken(signer, {
      subject: 'superlink-1',
      type: 'server',
      policy: loadPolicy(join(t.dir, 'policy.yaml')),
    }).token;
    const r = await call('POST', '/v1/enroll', {
      token,
      csr: createCsrFromKey(createPrivateKey(keyPem), 'superlink-1'),
    });
    expect(r.status).toBe(202); // servers wait for an admin under this policy
    await call('POST', '/v1/requests/approve', { names: ['superlink-1'] }, { admin: true });
    const cert = (
      await call('GET', '/v1/enrolled?type=server', undefined, { admin: true })
    ).json.enrolled.find((e: { name: string }) => e.name === 'superlink-1');
    const ts = Date.now();
    const polled = await call('POST', r.json.pollUrl, {
      timestamp: ts,
      signature: sign('sha256', Buffer.from(`pollen-poll:v1:${r.json.requestId}:${ts}`), keyPem).toString(
        'base64',
      ),
    });
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
  });

  it('refuses to approve a request for a name that is already enrolled', async () => {
    expect(
      (await call('POST', '/v1/enroll', { token: tokenFor('lab-dup'), csr: csrFor('lab-dup').csr })).status,
    ).toBe(202);
    expect((await call('POST', '/v1/requests/approve', { names: ['lab-dup'] }, { admin: true })).status).toBe(
      200,
    );
    expect(
      (await call('POST', '/v1/enroll', { token: tokenFor('lab-dup'), csr: csrFor('lab-dup').csr })).status,
    ).toBe(202);
    const second = await call('POST', '/v1/requests/approve', { names: ['lab-dup'] }, { admin: true });
    expect(second.json.error.code).toBe('ALREADY_ENROLLED');
  });

  it('ignores X-Forwarded-For unless the proxy is trusted', async () => {
    const r = await request(`https://127.0.0.1:${svc.port}/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '10.20.1.1' },
      body: JSON.stringify({ token: tokenFor('vpn-1'), csr: csrFor('vpn-1').csr }),
      dispatcher: agent,
    });
    expect(r.statusCode).toBe(202); // the rule for 10.20.0.0/16 did not apply
    await r.body.dump();
  });

  it('refuses an RSA key whose public exponent is not 65537', async () => {
    const key = join(t.dir, `e3-${_backend}.key`);
    execFileSync(
      'openssl',
      [
        'genpkey',
        '-algorithm',
        'RSA',
        '-pkeyopt',
        'rsa_keygen_bits:2048',
        '-pkeyopt',
        'rsa_keygen_pubexp:3',
        '-out',
        key,
      ],
      { stdio: 'ignore' },
    );
    const csr = execFileSync('openssl', ['req', '-new', '-key', key, '-subj', '/CN=hospital-e3']).toString();
    const r = await call('POST', '/v1/enroll', { token: tokenFor('hospital-e3'), csr });
    expect(r.json.error.code).toBe('KEY_TOO_WEAK');
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

  it('refuses a second enrollment of an enrolled site until it is revoked', async () => {
    expect(
      (
        await call('POST', '/v1/enroll', {
          token: tokenFor('hospital-twice'),
          csr: csrFor('hospital-twice').csr,
        })
      ).status,
    ).toBe(200);
    const again = await call('POST', '/v1/enroll', {
      token: tokenFor('hospital-twice'),
      csr: csrFor('hospital-twice').csr,
    });
    expect(again.json.error.code).toBe('ALREADY_ENROLLED');
    await call('POST', '/v1/revoke', { names: ['hospital-twice'] }, { admin: true });
    expect(
      (
        await call('POST', '/v1/enroll', {
          token: tokenFor('hospital-twice'),
          csr: csrFor('hospital-twice').csr,
        })
      ).status,
    ).toBe(200);
  });

  it('issues tokens through the admin API', async () => {
    const r = await call(
      'POST',
      '/v1/tokens',
      { subjects: ['hospital-api-1', 'hospital-api-2'], type: 'client' },
      { admin: true },
    );
    expect(r.status).toBe(200);
    expect(r.json.tokens).toHaveLength(2);
    const e = await call('POST', '/v1/enroll', {
      token: r.json.tokens[0].token,
      csr: csrFor('hospital-api-1').csr,
    });
    expect(e.status).toBe(200);
  });

  it('recorded every change above in an unbroken audit chain', async () => {
    const r = await call('GET', '/v1/audit?after=0&limit=10000', undefined, { admin: true });
    const entries = r.json.entries;
    expect(verifyAuditChain(entries)).toMatchObject({ ok: true });
    const actions = new Set(entries.map((e: { action: string }) => e.action));
    for (const a of [
      'certificate.issued',
      'request.pending',
      'request.approved',
      'request.rejected',
      'certificate.renewed',
      'certificate.revoked',
      'tokens.issued',
    ])
      expect(actions.has(a), a).toBe(true);
    // the race gave one certificate, and the log says so once
    expect(
      entries.filter(
        (e: { action: string; subject: string }) =>
          e.action === 'certificate.issued' && e.subject === 'hospital-race',
      ),
    ).toHaveLength(1);
    expect((await call('GET', '/v1/audit')).status).toBe(401);
  });
});

describe('policies a service honours', () => {
  it('refuses tokens made under a policy it ran with before but is no longer given', async () => {
    const workspace = join(t.dir, 'ws-policies');
    const base = {
      caDir,
      workspace,
      host: '127.0.0.1',
      port: 0,
      apiKeys: [API_KEY],
      logger: false as const,
      tidyIntervalMs: 0,
    };
    // first run: the permissive built-in policy
    const permissive = await startCertService(base);
    await permissive.close();
    // now the strict one: a token minted with the built-in default must not bypass it
    const strict = await startCertService({ ...base, policyFile: join(t.dir, 'policy.yaml') });
    const agent = new Agent({ connect: { ca: rootPem } });
    try {
      const token = issueToken(signer, { subject: 'hospital-sneaky', policy: loadPolicy() }).token;
      const r = await request(`https://127.0.0.1:${strict.port}/v1/enroll`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token, csr: csrFor('hospital-sneaky').csr }),
        dispatcher: agent,
      });
      expect(r.statusCode).toBe(401);
      expect(((await r.body.json()) as { error: { code: string; message: string } }).error.message).toContain(
        'does not accept',
      );
    } finally {
      await agent.close();
      await strict.close();
    }
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
