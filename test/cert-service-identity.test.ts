/**
 * Who calls the Certificate Service's admin API (in-process, Fastify inject): an API key (a
 * project admin, attributed to the key) or a login token (a person with roles and an
 * organisation), one per call; what an organisation's admin reaches; organisations from the
 * token into the certificate's O=, restricted by the policy's `orgs`.
 */
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPolicy } from '../src/enrollment/policy-load.js';
import { buildApp } from '../src/enrollment/service/app.js';
import type { EnrollmentSchema } from '../src/enrollment/service/schema.js';
import { issueToken } from '../src/enrollment/token.js';
import { readProfile } from '../src/pki/profiles.js';
import type { Database } from '../src/store/database.js';
import { API_KEY, callApp, RoutesFixture, testPolicy } from './support/cert-service.js';
import { codeOf } from './support/errors.js';
import { type LocalTokens, localTokens } from './support/local-tokens.js';

const f = new RoutesFixture('pollen-admin-identity-');
let tokens: LocalTokens;
let store: Database<EnrollmentSchema>;
let app: FastifyInstance;
let sites = 0;

beforeAll(async () => {
  await f.setup();
  tokens = await localTokens();
  store = await f.openStore('identity');
  app = buildApp(await f.service(store, { tokens: tokens.verifier }), { logger: false });
});
afterAll(async () => {
  await app?.close();
  await store?.close();
  f.cleanup();
});

const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
const as = async (role: string, org?: string) =>
  bearer(await tokens.sign(`${role}-${org ?? 'none'}`, { roles: [role], ...(org && { org }) }));

/** A site of `org` waiting for approval; its name. */
async function pending(org?: string): Promise<string> {
  const name = `lab-${++sites}`;
  const token = issueToken(f.signer, { subject: name, org, policy: f.policy, now: f.now() }).token;
  expect((await callApp(app, 'POST', '/v1/enroll', { token, csr: f.csrFor(name).csr })).status).toBe(202);
  return name;
}

describe('the admin API’s callers', () => {
  it('takes a login token or the API key, never both, and records who decided', async () => {
    const site = await pending('Alpha');
    const admin = await as('project_admin');
    const both = await callApp(app, 'GET', '/v1/requests', undefined, {
      headers: { authorization: `${admin.headers.authorization}, Bearer ${API_KEY}` },
    });
    expect([both.status, both.json.error.code]).toEqual([401, 'IDENTITY_AMBIGUOUS']);
    const approved = await callApp(app, 'POST', '/v1/requests/approve', { names: [site] }, admin);
    expect(approved.status).toBe(200);
    const requests = (await callApp(app, 'GET', '/v1/requests?status=approved', undefined, { admin: true }))
      .json.requests;
    expect(requests.find((r: { name: string }) => r.name === site)).toMatchObject({
      org: 'Alpha',
      decidedBy: 'user:project_admin-none',
    });
    const bad = await callApp(app, 'GET', '/v1/requests', undefined, bearer('a.b.c'));
    expect([bad.status, bad.json.error.code]).toEqual([401, 'UNAUTHENTICATED']);
    const none = await callApp(app, 'GET', '/v1/requests');
    expect(none.json.error.code).toBe('API_KEY_REQUIRED');
    // A service without a token verifier takes API keys only.
    const plainStore = await f.openStore('identity-plain');
    const plain = buildApp(await f.service(plainStore), { logger: false });
    try {
      const r = await callApp(plain, 'GET', '/v1/requests', undefined, admin);
      expect([r.status, r.json.error.code]).toEqual([401, 'OIDC_NOT_CONFIGURED']);
      expect((await callApp(plain, 'GET', '/v1/requests', undefined, { admin: true })).status).toBe(200);
    } finally {
      await plain.close();
      await plainStore.close();
    }
  });

  it('lets an organisation’s admin see, decide and revoke only its organisation’s enrollments, and issue only its tokens', async () => {
    const alpha = await pending('Alpha');
    const beta = await pending('Beta');
    const orgAdmin = await as('org_admin', 'Alpha');
    const listed = (await callApp(app, 'GET', '/v1/requests?status=pending', undefined, orgAdmin)).json
      .requests;
    expect(listed.map((r: { org: string }) => r.org)).toEqual(expect.arrayContaining(['Alpha']));
    expect(listed.some((r: { org: string | null }) => r.org !== 'Alpha')).toBe(false);
    // A selection that reaches into another organisation changes nothing.
    const mixed = await callApp(app, 'POST', '/v1/requests/approve', { names: [alpha, beta] }, orgAdmin);
    expect([mixed.status, mixed.json.error.code]).toEqual([403, 'WRONG_ORGANISATION']);
    const rejected = await callApp(app, 'POST', '/v1/requests/reject', { names: [beta] }, orgAdmin);
    expect(rejected.json.error.code).toBe('WRONG_ORGANISATION');
    expect((await callApp(app, 'POST', '/v1/requests/approve', { names: [alpha] }, orgAdmin)).status).toBe(
      200,
    );
    const enrolled = (await callApp(app, 'GET', '/v1/enrolled', undefined, orgAdmin)).json.enrolled;
    expect(enrolled.map((c: { name: string }) => c.name)).toContain(alpha);
    expect(enrolled.every((c: { org: string }) => c.org === 'Alpha')).toBe(true);
    const approvedBeta = await callApp(
      app,
      'POST',
      '/v1/requests/approve',
      { names: [beta] },
      { admin: true },
    );
    expect(approvedBeta.status).toBe(200);
    expect((await callApp(app, 'POST', '/v1/revoke', { names: [beta] }, orgAdmin)).json.error.code).toBe(
      'WRONG_ORGANISATION',
    );
    expect((await callApp(app, 'POST', '/v1/revoke', { names: [alpha] }, orgAdmin)).status).toBe(200);
    const issue = (org?: string) =>
      callApp(app, 'POST', '/v1/tokens', { subjects: ['new-site'], ...(org && { org }) }, orgAdmin);
    expect((await issue('Alpha')).status).toBe(200);
    expect((await issue('Beta')).json.error.code).toBe('WRONG_ORGANISATION');
    expect((await issue()).json.error.code).toBe('WRONG_ORGANISATION');
    // The audit trail it reads is its organisation's: changes to it, and calls by its people.
    const audit = (await callApp(app, 'GET', '/v1/audit?limit=1000', undefined, orgAdmin)).json.entries;
    expect(audit.length).toBeGreaterThan(0);
    expect(
      audit.every(
        (e: { actorOrg: string | null; detail: { org?: string } }) =>
          e.detail.org === 'Alpha' || e.actorOrg === 'Alpha',
      ),
    ).toBe(true);
    expect(audit.some((e: { outcome: string }) => e.outcome === 'refused WRONG_ORGANISATION')).toBe(true);
    for (const role of ['lead', 'member'])
      expect(
        (await callApp(app, 'GET', '/v1/audit', undefined, await as(role, 'Alpha'))).json.error.code,
      ).toBe('RIGHT_MISSING');
  });
});

describe('the admin API’s own service accounts', () => {
  it('takes a secret made on one worker at another, and a revocation holds at both at once', async () => {
    // A second service over the same store: another worker (`--workers`) or replica.
    const other = buildApp(await f.service(store, { tokens: tokens.verifier }), { logger: false });
    try {
      const created = await callApp(
        app,
        'POST',
        '/v1/service-accounts',
        { name: 'approver-alpha', roles: ['org_admin'], org: 'Alpha' },
        await as('org_admin', 'Alpha'),
      );
      expect(created.status).toBe(200);
      const secret = created.json.secret as string;
      expect(created.json.account).toMatchObject({
        name: 'approver-alpha',
        org: 'Alpha',
        createdBy: 'org_admin-Alpha',
      });
      const site = await pending('Alpha');
      const approved = await callApp(
        other,
        'POST',
        '/v1/requests/approve',
        { names: [site] },
        bearer(secret),
      );
      expect(approved.status).toBe(200);
      const requests = (await callApp(app, 'GET', '/v1/requests?status=approved', undefined, { admin: true }))
        .json.requests;
      expect(requests.find((r: { name: string }) => r.name === site).decidedBy).toBe('sa:approver-alpha');
      // Managing accounts: its organisation only, never wider than the creator.
      const wider = await callApp(
        app,
        'POST',
        '/v1/service-accounts',
        { name: 'x', roles: ['lead'] },
        await as('org_admin', 'Alpha'),
      );
      expect(wider.json.error.code).toBe('SERVICE_ACCOUNT_ROLE_TOO_WIDE');
      const listedByBeta = await callApp(
        app,
        'GET',
        '/v1/service-accounts',
        undefined,
        await as('org_admin', 'Beta'),
      );
      expect(listedByBeta.json.accounts.map((a: { name: string }) => a.name)).not.toContain('approver-alpha');
      const revokedByBeta = await callApp(
        app,
        'POST',
        '/v1/service-accounts/revoke',
        { name: 'approver-alpha' },
        await as('org_admin', 'Beta'),
      );
      expect(revokedByBeta.json.error.code).toBe('WRONG_ORGANISATION');
      expect(
        (await callApp(app, 'GET', '/v1/service-accounts', undefined, await as('member', 'Alpha'))).json.error
          .code,
      ).toBe('RIGHT_MISSING');
      // Revoked on one worker: refused on the other from the next call.
      expect(
        (
          await callApp(
            app,
            'POST',
            '/v1/service-accounts/revoke',
            { name: 'approver-alpha' },
            { admin: true },
          )
        ).status,
      ).toBe(200);
      const after = await callApp(other, 'GET', '/v1/requests', undefined, bearer(secret));
      expect([after.status, after.json.error.code]).toEqual([401, 'SERVICE_ACCOUNT_REVOKED']);
      // Both changes are in the audit trail, with who made them.
      const audit = (await callApp(app, 'GET', '/v1/audit?limit=10000', undefined, { admin: true })).json
        .entries;
      const actions = audit.filter((e: { target: string }) => e.target === 'approver-alpha');
      expect(actions.map((e: { action: string }) => e.action)).toEqual([
        'service_account.created',
        'service_account.revoked',
      ]);
      expect(JSON.stringify(actions[0])).toContain('org_admin-Alpha');
      expect(actions[1].auth).toBe('api_key');
    } finally {
      await other.close();
    }
  });
});

describe('organisations on certificates', () => {
  it('issues the certificate with O= from the token when the request is approved', async () => {
    const name = await pending('Gamma Labs');
    const approved = await callApp(app, 'POST', '/v1/requests/approve', { names: [name] }, { admin: true });
    expect(approved.status).toBe(200);
    const cert = (await callApp(app, 'GET', '/v1/enrolled', undefined, { admin: true })).json.enrolled.find(
      (c: { name: string }) => c.name === name,
    );
    expect(cert.org).toBe('Gamma Labs');
    const row = await store.db
      .selectFrom('certificates')
      .select('pem')
      .where('name', '=', name)
      .executeTakeFirstOrThrow();
    const { x509 } = await import('../src/pki/keys.js');
    expect(readProfile(new x509.X509Certificate(row.pem))).toMatchObject({ name, org: 'Gamma Labs' });
    expect(new X509Certificate(row.pem).subject).toContain('O=Gamma Labs');
  });

  it('refuses an organisation the policy does not list, or none when it lists some, and checks the list with line numbers', async () => {
    writeFileSync(
      join(f.dir, 'orgs.yaml'),
      testPolicy(
        'test-federation',
        ['{ name: "all", match: {}, action: approve }'],
        ['orgs: ["Alpha", "Beta"]'],
      ),
    );
    const policy = loadPolicy(join(f.dir, 'orgs.yaml'));
    const token = (org?: string) => issueToken(f.signer, { subject: 'x-site', org, policy, now: f.now() });
    expect(token('Alpha').claims.pollen.org).toBe('Alpha');
    expect(codeOf(() => token('Gamma'))).toBe('POLICY_ORG');
    expect(codeOf(() => token())).toBe('POLICY_ORG');
    expect(codeOf(() => issueToken(f.signer, { subject: 'x', org: 'bad/org', policy: f.policy }))).toBe(
      'INVALID_ARGUMENT',
    );
    writeFileSync(
      join(f.dir, 'bad-orgs.yaml'),
      testPolicy('p', ['{ name: "all", match: {}, action: approve }'], ['orgs: ["ok", "no/slash", "ok"]']),
    );
    let message = '';
    try {
      loadPolicy(join(f.dir, 'bad-orgs.yaml'));
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/orgs\[1\].*line 9.*organisation name/s);
    expect(message).toMatch(/orgs\[2\].*line 9.*listed twice/s);
  });
});

describe('the admin API in the audit trail', () => {
  it('records refused calls with who and from where, a flood as one entry and a count', async () => {
    const before = (await callApp(app, 'GET', '/v1/audit?limit=10000', undefined, { admin: true })).json
      .entries.length;
    const member = await as('member', 'Gamma');
    for (let i = 0; i < 200; i++)
      expect((await callApp(app, 'POST', '/v1/revoke', { names: ['x'] }, member)).json.error.code).toBe(
        'RIGHT_MISSING',
      );
    for (let i = 0; i < 50; i++)
      expect((await callApp(app, 'GET', '/v1/requests', undefined, bearer('pollen_nonsense'))).status).toBe(
        401,
      );
    const all = (await callApp(app, 'GET', '/v1/audit?limit=10000', undefined, { admin: true })).json.entries;
    const added = all.slice(before);
    expect(added).toMatchObject([
      {
        action: 'POST /v1/revoke',
        actorOrg: 'Gamma',
        auth: 'user',
        address: '127.0.0.1',
        outcome: 'refused RIGHT_MISSING',
      },
      { action: 'GET /v1/requests', auth: 'none', actor: 'unidentified@127.0.0.1' },
    ]);
    expect(added).toHaveLength(2);
  });
});
