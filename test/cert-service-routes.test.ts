import { execFileSync } from 'node:child_process';
import { randomUUID, sign, X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/enrollment/service/app.js';
import {
  callApp,
  expectAuditChain,
  opensslCsr,
  pollProof,
  RoutesFixture,
  STORE_BACKENDS,
} from './support/cert-service.js';
import { openssl } from './support/cli.js';

// The enrollment routes of the Certificate Service in-process (Fastify inject, no socket), on
// SQLite and PostgreSQL, with a frozen clock. The admin routes are in cert-service-admin.test.ts;
// real HTTPS, mutual TLS, restarts and races in cert-service.test.ts.

const f = new RoutesFixture('pollen-routes-');
beforeAll(f.setup);
afterAll(f.cleanup);

/** A token made by hand with the real token key: subject `sub`, `pollen` claims replaced. */
function forgeToken(sub: string, pollen: Record<string, unknown> = {}): string {
  const [h, p] = f.tokenFor('hospital-forge').split('.') as [string, string];
  const c = JSON.parse(Buffer.from(p, 'base64url').toString());
  const claims = { ...c, sub, jti: randomUUID(), pollen: { ...c.pollen, ...pollen } };
  const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const sig = sign('sha256', Buffer.from(`${h}.${body}`), {
    key: f.signer.privateKey,
    dsaEncoding: 'ieee-p1363',
  }).toString('base64url');
  return `${h}.${body}.${sig}`;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe.each(STORE_BACKENDS)('Certificate Service enrollment routes on %s', (backend, makeDb) => {
  const s = f.inProcess(`store-${backend}`, makeDb);
  const { call } = s;

  it('enrolls a site whose rule approves, with a certificate OpenSSL verifies', async () => {
    const { csr } = f.csrFor('hospital-1', 'p256'); // made by OpenSSL
    const r = await call('POST', '/v1/enroll', { token: f.tokenFor('hospital-1'), csr });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ status: 'issued', name: 'hospital-1', type: 'client' });
    expect(new Date(r.json.notAfter).getTime()).toBe(f.clock.t + 30 * DAY);
    const crt = join(f.dir, `${backend}-h1.crt`);
    writeFileSync(crt, r.json.certificate + r.json.chain);
    expect(
      openssl(['verify', '-CAfile', join(f.dir, 'ca', 'rootCA.pem'), '-untrusted', crt, crt]).out,
    ).toContain(': OK');
    const text = openssl(['x509', '-in', crt, '-noout', '-text']).out;
    expect(text).toContain('TLS Web Client Authentication');
    expect(text).toContain('CN = hospital-1');
  });

  it('answers a retry with the same token and key with what the first attempt produced', async () => {
    const token = f.tokenFor('hospital-retry');
    const { csr } = f.csrFor('hospital-retry');
    const first = await call('POST', '/v1/enroll', { token, csr });
    const again = await Promise.all([1, 2, 3].map(() => call('POST', '/v1/enroll', { token, csr })));
    expect(again.map((r) => r.json.serial)).toEqual([
      first.json.serial,
      first.json.serial,
      first.json.serial,
    ]);
    // another key with the same token is a replay
    expect(
      (await call('POST', '/v1/enroll', { token, csr: f.csrFor('hospital-retry').csr })).json.error.code,
    ).toBe('TOKEN_USED');
    // a pending request is resumed the same way, never duplicated
    const pToken = f.tokenFor('lab-retry');
    const p = f.csrFor('lab-retry');
    const a = await call('POST', '/v1/enroll', { token: pToken, csr: p.csr });
    const b = await call('POST', '/v1/enroll', { token: pToken, csr: p.csr });
    expect(b.status).toBe(202);
    expect(b.json.requestId).toBe(a.json.requestId);
  });

  it('takes the role from the token and refuses fields that try to set it', async () => {
    const { csr } = f.csrFor('lead@example.com');
    const token = f.tokenFor('lead@example.com', { type: 'user', role: 'member' });
    const sneaky = await call('POST', '/v1/enroll', { token, csr, role: 'project_admin', type: 'server' });
    expect(sneaky.status).toBe(400);
    expect(sneaky.json.error).toMatchObject({
      code: 'INVALID_REQUEST',
      message: 'Unknown fields: role, type',
      hint: 'This call accepts: token, csr.',
    });
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
    const { csr } = f.csrFor('someone-else');
    const good = f.tokenFor('lab-7');
    const tampered = `${good.split('.')[0]}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(good.split('.')[1]!, 'base64url').toString()), sub: 'hospital-x' })).toString('base64url')}.${good.split('.')[2]}`;
    for (const token of ['', 'not-a-jwt', tampered, good.slice(0, -4) + 'AAAA']) {
      // a bad token is refused as such whatever else the request holds
      for (const body of [{ token, csr }, { token }, { token, csr: 42 }]) {
        const r = await call('POST', '/v1/enroll', body);
        expect(r.status).toBe(401);
        expect(r.json.error).toEqual({
          code: 'TOKEN_INVALID',
          message: 'The enrollment token is invalid',
          hint: expect.any(String),
        });
      }
    }
    // an expired token is refused before its CSR is looked at
    const expired = f.tokenFor('lab-8');
    f.clock.t += 2 * DAY;
    try {
      const r = await call('POST', '/v1/enroll', { token: expired, csr: 42 });
      expect(r.json.error.code).toBe('TOKEN_EXPIRED');
    } finally {
      f.clock.t -= 2 * DAY;
    }
    // a valid token with a CSR for another name: only now is the CSR looked at
    const mismatch = await call('POST', '/v1/enroll', { token: good, csr });
    expect(mismatch.json.error.code).toBe('CSR_SUBJECT_MISMATCH');
    const after = await call('GET', '/v1/requests?status=all', undefined, { admin: true });
    expect(after.json.requests).toHaveLength(before.json.requests.length);
  });

  it('keeps each pending request, polls it with proof of possession, approves by pattern and rejects with a reason', async () => {
    const a = f.csrFor('lab-1');
    const b = f.csrFor('lab-1');
    const ra = await call('POST', '/v1/enroll', { token: f.tokenFor('lab-1'), csr: a.csr });
    const rb = await call('POST', '/v1/enroll', { token: f.tokenFor('lab-1'), csr: b.csr });
    expect(ra.status).toBe(202);
    expect(rb.status).toBe(202);
    expect(ra.headers['retry-after']).toBe('10');
    expect(ra.json).toEqual({
      status: 'pending',
      requestId: expect.stringMatching(/^req_/),
      pollUrl: `/v1/requests/${ra.json.requestId}/status`,
      retryAfter: 10,
    });
    expect(ra.json.requestId).not.toBe(rb.json.requestId);
    const pending = await call('GET', '/v1/requests', undefined, { admin: true });
    const ids = pending.json.requests
      .filter((r: { name: string }) => r.name === 'lab-1')
      .map((r: { id: string }) => r.id);
    expect(ids).toEqual(expect.arrayContaining([ra.json.requestId, rb.json.requestId]));

    const proof = (id: string, keyPem: string, ts = f.clock.t) => pollProof(id, keyPem, ts);
    const stillPending = await call('POST', ra.json.pollUrl, proof(ra.json.requestId, a.keyPem));
    expect(stillPending.status).toBe(202);
    // someone else's key, an old timestamp, an unknown id, a malformed proof: all refused alike
    const wrongKey = await call('POST', ra.json.pollUrl, proof(ra.json.requestId, b.keyPem));
    expect(wrongKey.status).toBe(401);
    expect(wrongKey.json.error.code).toBe('PROOF_INVALID');
    const old = await call('POST', ra.json.pollUrl, proof(ra.json.requestId, a.keyPem, f.clock.t - HOUR));
    expect(old.status).toBe(401);
    expect(old.json.error.message).toBe('The proof timestamp is too far from the service clock');
    // five minutes either way are accepted
    const edge = await call('POST', ra.json.pollUrl, proof(ra.json.requestId, a.keyPem, f.clock.t - 300_000));
    expect(edge.status).toBe(202);
    expect(
      (await call('POST', '/v1/requests/req_nope/status', proof('req_nope', a.keyPem))).json.error.code,
    ).toBe('PROOF_INVALID');
    for (const bad of [
      { timestamp: String(f.clock.t), signature: 'AA==' },
      { timestamp: f.clock.t, signature: 42 },
      { timestamp: f.clock.t, signature: 'A'.repeat(2049) },
      {},
    ]) {
      const r = await call('POST', ra.json.pollUrl, bad);
      expect(r.status).toBe(401);
      expect(r.json.error).toMatchObject({
        code: 'PROOF_INVALID',
        message: 'The proof of possession is not valid',
      });
    }

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
      decidedAt: f.now().toISOString(),
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
      await call('POST', '/v1/enroll', { token: f.tokenFor(n), csr: f.csrFor(n).csr });
    const bulk = await call(
      'POST',
      '/v1/requests/approve',
      { pattern: 'lab-2*', type: 'client' },
      { admin: true },
    );
    expect(bulk.json.approved.map((x: { name: string }) => x.name).sort()).toEqual(['lab-20', 'lab-21']);
  });

  it('applies reject rules without consuming the token', async () => {
    const token = f.tokenFor('evil-1');
    for (let i = 0; i < 2; i++) {
      const r = await call('POST', '/v1/enroll', { token, csr: f.csrFor('evil-1').csr });
      expect(r.status).toBe(403);
      // the site learns that it was refused, not how the policy is written
      expect(r.json.error).toEqual({
        code: 'ENROLLMENT_REJECTED',
        message: "Enrollment refused by the project's policy",
        hint: expect.any(String),
      });
    }
  });

  it('accepts OpenSSL CSRs with P-384 and RSA-2048 keys and refuses RSA-1024', async () => {
    for (const [kind, name] of [
      ['p384', 'hospital-p384'],
      ['rsa2048', 'hospital-rsa'],
    ] as const) {
      const r = await call('POST', '/v1/enroll', { token: f.tokenFor(name), csr: f.csrFor(name, kind).csr });
      expect(r.status, JSON.stringify(r.json)).toBe(200);
    }
    const weak = await call('POST', '/v1/enroll', {
      token: f.tokenFor('hospital-weak'),
      csr: f.csrFor('hospital-weak', 'rsa1024').csr,
    });
    expect(weak.status).toBe(400);
    expect(weak.json.error.code).toBe('KEY_TOO_WEAK');
  });

  it('answers malformed input of every kind with a 4xx and keeps serving', async () => {
    const token = f.tokenFor('hospital-fuzz');
    const { csr } = f.csrFor('hospital-fuzz');
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
    expect((await call('POST', '/v1/enroll', undefined, { raw: 'x'.repeat(70_000) })).json.error.code).toBe(
      'PAYLOAD_TOO_LARGE',
    );
    expect((await call('POST', '/v1/enroll', undefined, { raw: '[]' })).json.error.message).toBe(
      'The request body must be a JSON object',
    );
    for (const body of [{ token }, { token, csr: 42 }, { token, csr: '' }])
      expect((await call('POST', '/v1/enroll', body)).json.error).toMatchObject({
        code: 'CSR_INVALID',
        message: 'The CSR is missing or not a string',
      });
    expect((await call('POST', '/v1/enroll', { token, csr: tamperedCsr })).json.error.code).toMatch(
      /^CSR_(SIGNATURE_)?INVALID$/,
    );
    const form = await call('POST', '/v1/enroll', undefined, {
      raw: 'token=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.json.error).toMatchObject({
      code: 'INVALID_REQUEST',
      message: 'The request body must be JSON (Content-Type: application/json)',
    });
    expect((await call('GET', '/v1/nope')).json.error.code).toBe('ROUTE_NOT_FOUND');
    expect((await call('GET', '/v1/health')).json).toMatchObject({ status: 'ok', backend });
    // the token survived all of that unconsumed
    expect((await call('POST', '/v1/enroll', { token, csr })).status).toBe(200);
  });

  it('refuses hand-made tokens whose hosts a certificate cannot carry, and names the hosts of a server in its certificate', async () => {
    // Signed with the real token key, as `token generate` never would: hosts on a client, or hosts
    // that would smuggle another name into the subjectAltName.
    const forge = (sub: string, type: string, hosts: string[]) =>
      forgeToken(sub, { subject_type: type, hosts });
    for (const [type, hosts] of [
      ['client', ['hospital.example.org']],
      ['server', ['link.example.org, URI:pollen://test-federation/admin/root']],
      ['server', ['a b']],
    ] as const) {
      const r = await call('POST', '/v1/enroll', {
        token: forge('hospital-hosts', type, [...hosts]),
        csr: f.csrFor('hospital-hosts').csr,
      });
      expect(r.status, JSON.stringify(r.json)).toBe(401);
      expect(r.json.error).toMatchObject({
        code: 'TOKEN_INVALID',
        message: expect.stringContaining('hosts'),
      });
    }
    const ok = await call('POST', '/v1/enroll', {
      token: forge('hospital-hosts', 'server', ['Link.Example.org', '192.0.2.7']),
      csr: f.csrFor('hospital-hosts').csr,
    });
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    const san = new X509Certificate(ok.json.certificate).subjectAltName;
    expect(san).toMatch(
      /^DNS:link\.example\.org, IP Address:192\.0\.2\.7, URI:pollen:\/\/[^/]+\/server\/hospital-hosts$/,
    );
  });

  it('refuses token subjects outside the name rules even when the token key signed them, and CSRs with two common names', async () => {
    // A token made by hand with the real token key: only the name rules stand between it and a certificate.
    const forge = (sub: string) => forgeToken(sub);
    for (const name of [
      'hospital-x/../../y',
      'hospital-ü',
      'hospital-a,URI:pollen://test-federation/admin/root',
      'hospital-a\nCN=b',
      `hospital-${'a'.repeat(64)}`,
    ]) {
      const r = await call('POST', '/v1/enroll', { token: forge(name), csr: f.csrFor(name).csr });
      expect(r.status, `${JSON.stringify(name)} → ${JSON.stringify(r.json)}`).toBe(401);
      expect(r.json.error.code).toBe('TOKEN_INVALID');
      expect(r.json.error.message).toContain('not a valid client name');
    }
    // the same hand-made token with a good name works: the refusals above are the name rules
    const fine = await call('POST', '/v1/enroll', {
      token: forge('hospital-forged-ok'),
      csr: f.csrFor('hospital-forged-ok').csr,
    });
    expect(fine.status).toBe(200);

    // a CSR whose subject holds two CNs, the first one the token's
    const twoCn = opensslCsr(f.dir, 'hospital-two-cn', 'p256', '/CN=hospital-two-cn/CN=hospital-other').csr;
    const r = await call('POST', '/v1/enroll', { token: f.tokenFor('hospital-two-cn'), csr: twoCn });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({
      code: 'CSR_INVALID',
      message: 'The CSR subject has 2 common names',
    });
  });

  it('believes X-Forwarded-For only from a trusted proxy', async () => {
    const forwarded = { 'x-forwarded-for': '10.20.1.1' };
    const r = await call(
      'POST',
      '/v1/enroll',
      { token: f.tokenFor('vpn-1'), csr: f.csrFor('vpn-1').csr },
      { headers: forwarded },
    );
    expect(r.status).toBe(202); // the rule for 10.20.0.0/16 did not apply
    const behindProxy = buildApp(s.service, { logger: false, trustProxy: '127.0.0.1' });
    try {
      const ok = await callApp(
        behindProxy,
        'POST',
        '/v1/enroll',
        {
          token: f.tokenFor('vpn-2'),
          csr: f.csrFor('vpn-2').csr,
        },
        { headers: forwarded },
      );
      expect(ok.status).toBe(200); // inject comes from 127.0.0.1, the trusted proxy
    } finally {
      await behindProxy.close();
    }
  });

  it('refuses an RSA key whose public exponent is not 65537', async () => {
    const key = join(f.dir, `e3-${backend}.key`);
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
    const r = await call('POST', '/v1/enroll', { token: f.tokenFor('hospital-e3'), csr });
    expect(r.json.error.code).toBe('KEY_TOO_WEAK');
  });

  it('refuses a second enrollment of an enrolled site until it is revoked or has expired', async () => {
    const enroll = (name: string) =>
      call('POST', '/v1/enroll', { token: f.tokenFor(name), csr: f.csrFor(name).csr });
    expect((await enroll('hospital-twice')).status).toBe(200);
    expect((await enroll('hospital-twice')).json.error.code).toBe('ALREADY_ENROLLED');
    await call('POST', '/v1/revoke', { names: ['hospital-twice'] }, { admin: true });
    expect((await enroll('hospital-twice')).status).toBe(200);
    // an expired certificate does not hold the name either
    expect((await enroll('hospital-expires')).status).toBe(200);
    f.clock.t += 31 * DAY;
    try {
      expect((await enroll('hospital-expires')).status).toBe(200);
    } finally {
      f.clock.t -= 31 * DAY;
    }
  });

  it('recorded every change above in an unbroken audit chain, a retried enrollment once', async () => {
    const entries = (await call('GET', '/v1/audit?after=0&limit=10000', undefined, { admin: true })).json
      .entries;
    expectAuditChain(
      entries,
      ['certificate.issued', 'request.pending', 'request.approved', 'request.rejected'],
      'hospital-retry', // a retried enrollment is recorded once
    );
  });
});
