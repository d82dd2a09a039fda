import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadPolicy } from '../src/enrollment/policy-load.js';
import { buildApp } from '../src/enrollment/service/app.js';
import type { EnrollmentSchema } from '../src/enrollment/service/schema.js';
import type { CertificateService } from '../src/enrollment/service/service.js';
import { PollenError } from '../src/errors.js';
import type { Database } from '../src/store/database.js';
import { callApp, expectAuditChain, RoutesFixture, STORE_BACKENDS } from './support/cert-service.js';
import { openssl } from './support/cli.js';

// The admin routes of the Certificate Service in-process (Fastify inject, no socket), on SQLite
// and PostgreSQL, with a frozen clock; the tidy job; what a client is told of an unexpected
// failure, and what the log keeps.

const f = new RoutesFixture('pollen-admin-');
beforeAll(f.setup);
afterAll(f.cleanup);

const DAY = 86_400_000;

describe.each(STORE_BACKENDS)('Certificate Service admin routes on %s', (backend, makeDb) => {
  const s = f.inProcess(`store-${backend}`, makeDb);
  const { call } = s;

  it('refuses a revocation whose reason is not a short string and revokes nothing', async () => {
    const name = 'hospital-revoke-reason';
    const issued = await call('POST', '/v1/enroll', { token: f.tokenFor(name), csr: f.csrFor(name).csr });
    expect(issued.status).toBe(200);
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
    expect(await s.service.certificates.isRevoked(issued.json.serial)).toBe(false);
    const ok = await call('POST', '/v1/revoke', { names: [name], reason: 'keyCompromise' }, { admin: true });
    expect(ok.json.revoked).toHaveLength(1);
    expect(await s.service.certificates.isRevoked(issued.json.serial.toUpperCase())).toBe(true);
    const none = await call('POST', '/v1/revoke', { names: [name] }, { admin: true });
    expect(none.status).toBe(404);
    expect(none.json.error.code).toBe('NOT_ENROLLED');
  });

  it('refuses malformed admin requests with a message that names the field', async () => {
    for (const name of ['lab-refused', 'lab-waiting'])
      expect(
        (await call('POST', '/v1/enroll', { token: f.tokenFor(name), csr: f.csrFor(name).csr })).status,
      ).toBe(202);
    const reject = await call('POST', '/v1/requests/reject', { names: ['lab-refused'] }, { admin: true });
    expect(reject.json.rejected).toEqual([
      { id: expect.any(String), name: 'lab-refused', type: 'client', reason: 'rejected by an administrator' },
    ]);
    const refused = async (method: 'GET' | 'POST', url: string, body: unknown, message: string) => {
      const r = await call(method, url, body, { admin: true });
      expect(r.status, `${url} ${JSON.stringify(body)}`).toBe(400);
      expect(r.json.error).toMatchObject({ code: 'INVALID_REQUEST', message });
    };
    const subjects = '`subjects` must be a list of 1 to 10000 names';
    for (const s of [undefined, [], 'hospital-a', [1], Array(10_001).fill('a')])
      await refused('POST', '/v1/tokens', { subjects: s }, subjects);
    await refused(
      'POST',
      '/v1/tokens',
      { subjects: ['a'], type: 'root' },
      '`type` must be client, server, relay or user',
    );
    await refused('POST', '/v1/tokens', { subjects: ['a'], role: 7 }, '`role` must be a string');
    for (const verb of ['approve', 'reject']) {
      const url = `/v1/requests/${verb}`;
      await refused('POST', url, { names: 'lab-1' }, '`names` must be a list of names or request ids');
      await refused('POST', url, { pattern: 3 }, '`pattern` must be a string');
      await refused('POST', url, { names: ['x'], type: ['client'] }, '`type` must be a string');
      await refused('POST', url, { names: [], pattern: '' }, 'Give names (or request ids) or a pattern');
      await refused('POST', url, { names: ['x'], serials: [] }, 'Unknown field: serials');
    }
    await refused(
      'POST',
      '/v1/requests/reject',
      { names: ['x'], reason: 'r'.repeat(1001) },
      '`reason` must be a string of at most 1000 characters',
    );
    await refused('POST', '/v1/revoke', { names: 'x' }, '`names` and `serials` must be lists of strings');
    await refused('POST', '/v1/revoke', { serials: [1] }, '`names` and `serials` must be lists of strings');
    await refused('POST', '/v1/revoke', {}, 'Give names or serials to revoke');
    const range = '`after` must be a sequence number and `limit` 1-10000';
    for (const q of ['after=-1', 'after=abc', 'after=1.5', 'limit=0', 'limit=10001', 'after=1&after=2'])
      await refused('GET', `/v1/audit?${q}`, undefined, range);
    await refused(
      'GET',
      '/v1/requests?status=bogus',
      undefined,
      '`status` must be pending, approved, rejected or all',
    );
    await refused('GET', '/v1/enrolled?type=a&type=b', undefined, '`type` must be a string');
    // what the queries accept
    expect(
      (await call('GET', '/v1/audit?after=&limit=1', undefined, { admin: true })).json.entries,
    ).toHaveLength(1);
    const all = (await call('GET', '/v1/requests?status=all', undefined, { admin: true })).json.requests;
    expect((await call('GET', '/v1/requests?status=', undefined, { admin: true })).json.requests).toEqual(
      all,
    );
    const rejected = (await call('GET', '/v1/requests?status=rejected', undefined, { admin: true })).json
      .requests;
    expect(rejected.length).toBeGreaterThan(0);
    expect(rejected.every((r: { status: string }) => r.status === 'rejected')).toBe(true);
  });

  it('requires the admin API key', async () => {
    const none = await call('GET', '/v1/requests');
    expect(none.status).toBe(401);
    expect(none.json.error.code).toBe('API_KEY_REQUIRED');
    const wrong = await call('GET', '/v1/enrolled', undefined, {
      headers: { authorization: 'Bearer wrong' },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.json.error.code).toBe('API_KEY_INVALID');
    // the key is checked before the body: a bad body from a stranger learns nothing
    const stranger = await call('POST', '/v1/revoke', { bogus: 1 });
    expect(stranger.json.error.code).toBe('API_KEY_REQUIRED');
  });

  it('refuses to approve a request for a name that is already enrolled', async () => {
    expect(
      (await call('POST', '/v1/enroll', { token: f.tokenFor('lab-dup'), csr: f.csrFor('lab-dup').csr }))
        .status,
    ).toBe(202);
    expect((await call('POST', '/v1/requests/approve', { names: ['lab-dup'] }, { admin: true })).status).toBe(
      200,
    );
    expect(
      (await call('POST', '/v1/enroll', { token: f.tokenFor('lab-dup'), csr: f.csrFor('lab-dup').csr }))
        .status,
    ).toBe(202);
    const second = await call('POST', '/v1/requests/approve', { names: ['lab-dup'] }, { admin: true });
    expect(second.json.error.code).toBe('ALREADY_ENROLLED');
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
    expect(r.json.tokens[0]).toMatchObject({
      subject: 'hospital-api-1',
      subjectType: 'client',
      expiresAt: new Date(f.clock.t + DAY).toISOString(),
    });
    const e = await call('POST', '/v1/enroll', {
      token: r.json.tokens[0].token,
      csr: f.csrFor('hospital-api-1').csr,
    });
    expect(e.status).toBe(200);
    // the type defaults to client
    const d = await call('POST', '/v1/tokens', { subjects: ['hospital-api-3'] }, { admin: true });
    expect(d.json.tokens[0].subjectType).toBe('client');
  });

  it('re-signs the CRL a minute after it was made, or at once after a revocation', async () => {
    const crlSerials = async () => {
      const r = await s.app.inject({ method: 'GET', url: '/v1/crl' });
      expect(r.headers['content-type']).toMatch(/^application\/x-pem-file/);
      writeFileSync(join(f.dir, 'crl.pem'), r.body);
      return openssl(['crl', '-in', join(f.dir, 'crl.pem'), '-noout', '-text']).out;
    };
    const first = await crlSerials();
    const der = await s.app.inject({ method: 'GET', url: '/v1/crl?format=der' });
    expect(der.headers['content-type']).toBe('application/pkix-crl');
    expect(der.rawPayload[0]).toBe(0x30);
    const name = 'hospital-crl';
    const issued = await call('POST', '/v1/enroll', { token: f.tokenFor(name), csr: f.csrFor(name).csr });
    expect(first).not.toContain(issued.json.serial.toUpperCase());
    await call('POST', '/v1/revoke', { serials: [issued.json.serial] }, { admin: true });
    const second = await crlSerials();
    expect(second).toContain(issued.json.serial.toUpperCase());
    expect(await crlSerials()).toBe(second);
    f.clock.t += 61_000;
    try {
      expect(await crlSerials()).not.toBe(second); // signed again, with a later thisUpdate
    } finally {
      f.clock.t -= 61_000;
    }
  });

  it('recorded every change above in an unbroken audit chain', async () => {
    const r = await call('GET', '/v1/audit?after=0&limit=10000', undefined, { admin: true });
    expectAuditChain(r.json.entries, [
      'certificate.issued',
      'request.pending',
      'request.approved',
      'request.rejected',
      'certificate.revoked',
      'tokens.issued',
    ]);
    expect((await call('GET', '/v1/audit')).status).toBe(401);
    // paging: after and limit
    const page = await call('GET', '/v1/audit?after=2&limit=3', undefined, { admin: true });
    expect(page.json.entries.map((e: { seq: number }) => e.seq)).toEqual([3, 4, 5]);
  });

  it('tidies: forgets spent tokens, old decisions and long-expired certificates, never pending requests', async () => {
    const pendingBefore = (await call('GET', '/v1/requests', undefined, { admin: true })).json.requests;
    expect(pendingBefore.length).toBeGreaterThan(0);
    expect(await s.service.tidy()).toEqual({ tokens: 0, requests: 0, certificates: 0 });
    f.clock.t += 100 * DAY; // every token expired, every certificate ended over 30 days ago
    try {
      const removed = await s.service.tidy();
      expect(removed.tokens).toBeGreaterThan(0);
      expect(removed.requests).toBeGreaterThan(0);
      expect(removed.certificates).toBeGreaterThan(0);
      expect((await call('GET', '/v1/enrolled', undefined, { admin: true })).json.enrolled).toEqual([]);
      const left = (await call('GET', '/v1/requests?status=all', undefined, { admin: true })).json.requests;
      expect(left.map((r: { id: string }) => r.id).sort()).toEqual(
        pendingBefore.map((r: { id: string }) => r.id).sort(),
      );
    } finally {
      f.clock.t -= 100 * DAY;
    }
  });
});

describe('unexpected failures', () => {
  let store: Database<EnrollmentSchema>;
  let service: CertificateService;
  let app: FastifyInstance;
  const lines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    store = await f.openStore('store-failures');
    service = await f.service(store);
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
        done();
      },
    });
    app = buildApp(service, { logger: pino({ level: 'info' }, destination) });
  });
  afterAll(async () => {
    await app.close();
    await store.close();
  });

  it('answers a bare INTERNAL with a reference, and logs the full error under that reference', async () => {
    const secret = '/srv/pollen/secret-workspace/cert-service.db';
    const failure = Object.assign(new Error(`ENOENT: no such file or directory, open '${secret}'`), {
      code: 'ENOENT',
      path: secret,
    });
    const spy = vi.spyOn(service.requests, 'list').mockRejectedValueOnce(failure);
    const r = await callApp(app, 'GET', '/v1/requests', undefined, { admin: true });
    spy.mockRestore();
    expect(r.status).toBe(500);
    expect(r.json.error).toEqual({
      code: 'INTERNAL',
      message: expect.stringMatching(/^Internal error \(reference [0-9a-f]{10}\)$/),
      hint: expect.any(String),
      reference: expect.stringMatching(/^[0-9a-f]{10}$/),
    });
    const text = JSON.stringify(r.json);
    expect(text).not.toContain(secret);
    expect(text).not.toContain('ENOENT');
    expect(text).not.toMatch(/\bat .*\.ts:\d+/);
    const reference = /reference ([0-9a-f]+)/.exec(r.json.error.message)![1];
    expect(r.json.error.reference).toBe(reference);
    const logged = lines.find((l) => l.reference === reference);
    expect(logged).toMatchObject({
      level: 50,
      msg: 'internal error',
      method: 'GET',
      url: '/v1/requests',
      err: { message: expect.stringContaining(secret), stack: expect.stringContaining('Error: ENOENT') },
    });
    // each failure has its own reference
    vi.spyOn(service.requests, 'list').mockRejectedValueOnce(new TypeError('boom'));
    const again = await callApp(app, 'GET', '/v1/requests', undefined, { admin: true });
    expect(again.json.error.message).not.toBe(r.json.error.message);
  });

  it('hides an internal PollenError the same way, and answers a store it cannot reach as UNAVAILABLE', async () => {
    vi.spyOn(service.certificates, 'list').mockRejectedValueOnce(
      new PollenError('INTERNAL', `Kit builder produced a bad path: ${f.dir}`),
    );
    const r = await callApp(app, 'GET', '/v1/enrolled', undefined, { admin: true });
    expect(r.status).toBe(500);
    expect(JSON.stringify(r.json)).not.toContain(f.dir);
    vi.spyOn(service.certificates, 'list').mockRejectedValueOnce(
      Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' }),
    );
    const down = await callApp(app, 'GET', '/v1/enrolled', undefined, { admin: true });
    expect(down.status).toBe(503);
    expect(down.json.error).toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringMatching(
        /^The service cannot reach a system it depends on, such as its database \(reference [0-9a-f]{10}\)$/,
      ),
    });
    expect(JSON.stringify(down.json)).not.toContain('10.0.0.5');
    const reference = /reference ([0-9a-f]+)/.exec(down.json.error.message)![1];
    expect(lines.find((l) => l.reference === reference)).toMatchObject({ level: 50 });
  });

  it('fails a call on a closed store with INTERNAL, and public refusals stay as they are', async () => {
    const refused = await callApp(app, 'POST', '/v1/enroll', { token: 'x', csr: 'y' });
    expect(refused.json.error).toMatchObject({
      code: 'TOKEN_INVALID',
      message: 'The enrollment token is invalid',
    });
    expect(lines.find((l) => l.msg === 'The enrollment token is invalid')).toMatchObject({
      level: 30,
      code: 'TOKEN_INVALID',
    });
    await store.close();
    const r = await callApp(app, 'GET', '/v1/requests', undefined, { admin: true });
    expect(r.status).toBe(500);
    expect(r.json.error.code).toBe('INTERNAL');
    store = await f.openStore('store-failures');
  });
});

describe('policies a service honours', () => {
  it('refuses tokens made under a policy it ran with before but is no longer given', async () => {
    const store = await f.openStore('store-policies');
    try {
      // first run: the permissive built-in policy
      await f.service(store, { policy: loadPolicy() });
      // now the strict one: a token minted with the built-in default must not bypass it
      const strict = buildApp(await f.service(store), { logger: false });
      const token = f.tokenFor('hospital-sneaky', { policy: loadPolicy() });
      const r = await callApp(strict, 'POST', '/v1/enroll', { token, csr: f.csrFor('hospital-sneaky').csr });
      expect(r.status).toBe(401);
      expect(r.json.error.message).toContain('does not accept');
      // unless it is told to accept it
      const both = buildApp(await f.service(store, { acceptPolicies: [loadPolicy()] }), { logger: false });
      const ok = await callApp(both, 'POST', '/v1/enroll', { token, csr: f.csrFor('hospital-sneaky').csr });
      expect(ok.status).toBe(200);
    } finally {
      await store.close();
    }
  });

  it('needs an admin API key', async () => {
    const store = await f.openStore('store-no-keys');
    try {
      await expect(f.service(store, { apiKeyHashes: [] })).rejects.toMatchObject({
        code: 'API_KEY_REQUIRED',
      });
    } finally {
      await store.close();
    }
  });
});
