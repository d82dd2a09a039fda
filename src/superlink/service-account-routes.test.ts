/**
 * The Control API's service-account calls in memory (Connect's router transport): who may create,
 * list and revoke which accounts (project admins any, org admins their organisation's, never with
 * rights wider than their own, leads and members none), and the calls as the Control API serves
 * them to an admin certificate. The store itself is tested in service-accounts.test.ts.
 */
import { type Client, createClient, createRouterTransport } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { outcomeOf } from '../../test/support/errors.js';
import { type MemoryLink, memoryLinks } from '../../test/support/memory-link.js';
import { Control } from '../gen/pollen/v1/control_pb.js';
import type { Identity, Role } from '../identity/identity.js';
import { DEFAULT_ACCESS_POLICY } from '../identity/rights.js';
import { refuseWider } from '../identity/service-account-admin.js';
import { fromConnectError } from '../transport/errors.js';
import { serviceAccountHandlers } from './service-account-routes.js';

const start = memoryLinks('service-account-routes');
const DAY = 86_400_000;

function person(name: string, roles: Role[], org?: string): Identity {
  return { kind: 'user', subject: `sub-${name}`, name, org, roles };
}
const projectAdmin = person('pat@example.com', ['project_admin']);
const orgAdminA = person('ada@a.example', ['org_admin'], 'hospital-a');
const orgAdminB = person('bob@b.example', ['org_admin'], 'hospital-b');
const leadA = person('lea@a.example', ['lead'], 'hospital-a');
const memberA = person('max@a.example', ['member'], 'hospital-a');

/** A Control client whose every call is made by `who`, over `l`'s service accounts. */
function as(l: MemoryLink, who: Identity): Client<typeof Control> {
  return createClient(
    Control,
    createRouterTransport((router) =>
      router.service(
        Control,
        serviceAccountHandlers({ accounts: l.state.serviceAccounts, identify: () => who, log: l.link.log }),
      ),
    ),
  );
}

describe('who manages service accounts', () => {
  it('lets a project admin create accounts of any role and organisation, and shows the secret only on creation', async () => {
    const l = await start();
    const admin = as(l, projectAdmin);
    const created = await admin.createServiceAccount({
      name: 'ci-train',
      roles: ['lead'],
      org: 'hospital-a',
      expiresAt: BigInt(l.clock.now() + 30 * DAY),
    });
    expect(created.secret).toMatch(/^pollen_sa_/);
    expect(created.account).toMatchObject({
      name: 'ci-train',
      roles: ['lead'],
      org: 'hospital-a',
      expiresAt: BigInt(l.clock.now() + 30 * DAY),
      createdBy: 'pat@example.com',
      createdAt: BigInt(l.clock.now()),
      revokedAt: 0n,
      lastUsedAt: 0n,
    });
    const root = await admin.createServiceAccount({ name: 'ops', roles: ['project_admin'] });
    // No organisation given: its creator's (a project admin here has none); no expiry: 0.
    expect(root.account).toMatchObject({ org: '', expiresAt: 0n, roles: ['project_admin'] });
    const listed = await admin.listServiceAccounts({});
    expect(listed.accounts.map((a) => a.name)).toEqual(['ci-train', 'ops']);
    const wire = JSON.stringify(listed, (_k, v) => (typeof v === 'bigint' ? String(v) : v));
    expect(wire).not.toContain(created.secret);
    expect(wire).not.toContain('pollen_sa_');
    expect(l.logs).toContainEqual(
      expect.objectContaining({ event: 'service_account.created', name: 'ci-train', by: 'pat@example.com' }),
    );
    expect(JSON.stringify(l.logs)).not.toContain(created.secret);
  });

  it('lets an org admin manage the accounts of their organisation only, never with rights wider than their own', async () => {
    const l = await start();
    await as(l, projectAdmin).createServiceAccount({ name: 'b-job', roles: ['member'], org: 'hospital-b' });
    const ada = as(l, orgAdminA);
    // Their organisation is the default.
    const own = await ada.createServiceAccount({ name: 'a-sync', roles: ['org_admin'] });
    expect(own.account).toMatchObject({ org: 'hospital-a', roles: ['org_admin'] });
    expect(
      await outcomeOf(ada.createServiceAccount({ name: 'a-view', roles: ['member'], org: 'hospital-a' })),
    ).toBe('ok');
    expect(
      await outcomeOf(ada.createServiceAccount({ name: 'x', roles: ['member'], org: 'hospital-b' })),
    ).toBe('WRONG_ORGANISATION');
    const tooWide = ada.createServiceAccount({ name: 'x', roles: ['project_admin'] });
    await expect(tooWide).rejects.toSatisfy((e) => {
      const pe = fromConnectError(e);
      expect(pe).toMatchObject({ code: 'SERVICE_ACCOUNT_ROLE_TOO_WIDE' });
      expect(pe.message).toBe(
        'ada@a.example may not give a service account the role project_admin: it grants run.submit (any), which they do not hold',
      );
      return true;
    });
    // A lead submits runs, which an org admin may not: an account of theirs may not either.
    expect(await outcomeOf(ada.createServiceAccount({ name: 'x', roles: ['lead'] }))).toBe(
      'SERVICE_ACCOUNT_ROLE_TOO_WIDE',
    );
    expect((await ada.listServiceAccounts({})).accounts.map((a) => a.name)).toEqual(['a-sync', 'a-view']);
    expect(await outcomeOf(ada.revokeServiceAccount({ name: 'b-job' }))).toBe('WRONG_ORGANISATION');
    expect((await l.state.serviceAccounts.get('b-job'))?.revokedAt).toBeUndefined();
    const revoked = await ada.revokeServiceAccount({ name: 'a-view' });
    expect(revoked.account).toMatchObject({ name: 'a-view', revokedAt: BigInt(l.clock.now()) });
    expect(l.logs).toContainEqual(
      expect.objectContaining({ event: 'service_account.revoked', name: 'a-view', by: 'ada@a.example' }),
    );
    // The other organisation's admin sees only theirs.
    expect((await as(l, orgAdminB).listServiceAccounts({})).accounts.map((a) => a.name)).toEqual(['b-job']);
    expect((await l.state.serviceAccounts.list()).map((a) => a.name)).toEqual(['a-sync', 'a-view', 'b-job']);
  });

  it('refuses leads and members every call (RIGHT_MISSING)', async () => {
    const l = await start();
    await as(l, projectAdmin).createServiceAccount({ name: 'a-job', roles: ['member'], org: 'hospital-a' });
    for (const who of [leadA, memberA]) {
      const c = as(l, who);
      expect({
        who: who.name,
        create: await outcomeOf(c.createServiceAccount({ name: 'mine', roles: ['member'] })),
        list: await outcomeOf(c.listServiceAccounts({})),
        revoke: await outcomeOf(c.revokeServiceAccount({ name: 'a-job' })),
        revokeUnknown: await outcomeOf(c.revokeServiceAccount({ name: 'nope' })),
      }).toEqual({
        who: who.name,
        create: 'RIGHT_MISSING',
        list: 'RIGHT_MISSING',
        revoke: 'RIGHT_MISSING',
        revokeUnknown: 'RIGHT_MISSING',
      });
    }
    expect((await l.state.serviceAccounts.list()).map((a) => [a.name, a.revokedAt])).toEqual([
      ['a-job', undefined],
    ]);
  });

  it('answers a name taken, an unknown account and bad input with their codes', async () => {
    const l = await start();
    const admin = as(l, projectAdmin);
    await admin.createServiceAccount({ name: 'job', roles: ['member'] });
    expect(await outcomeOf(admin.createServiceAccount({ name: 'job', roles: ['lead'] }))).toBe(
      'SERVICE_ACCOUNT_EXISTS',
    );
    expect(await outcomeOf(admin.revokeServiceAccount({ name: 'nope' }))).toBe('SERVICE_ACCOUNT_NOT_FOUND');
    expect(await outcomeOf(admin.createServiceAccount({ name: 'x', roles: ['root'] }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await outcomeOf(admin.createServiceAccount({ name: 'x', roles: [] }))).toBe('INVALID_ARGUMENT');
    expect(
      await outcomeOf(
        admin.createServiceAccount({ name: 'x', roles: ['member'], expiresAt: BigInt(l.clock.now()) }),
      ),
    ).toBe('INVALID_ARGUMENT');
  });

  it('lets a service account with the right manage accounts as its definition allows', async () => {
    const l = await start();
    const { secret } = await as(l, projectAdmin).createServiceAccount({
      name: 'provisioner',
      roles: ['org_admin'],
      org: 'hospital-a',
    });
    const sa = await l.state.serviceAccounts.authenticate(secret);
    const c = as(l, sa);
    const made = await c.createServiceAccount({ name: 'a-eval', roles: ['member'] });
    expect(made.account).toMatchObject({ org: 'hospital-a', createdBy: 'sa:provisioner' });
    expect(await outcomeOf(c.createServiceAccount({ name: 'x', roles: ['project_admin'] }))).toBe(
      'SERVICE_ACCOUNT_ROLE_TOO_WIDE',
    );
  });
});

describe('refuseWider', () => {
  it('compares rights and scopes, not role names', () => {
    const p = DEFAULT_ACCESS_POLICY;
    expect(() =>
      refuseWider(p, projectAdmin, ['project_admin', 'org_admin', 'lead', 'member']),
    ).not.toThrow();
    expect(() => refuseWider(p, orgAdminA, ['org_admin', 'member'])).not.toThrow();
    expect(() => refuseWider(p, leadA, ['lead', 'member'])).not.toThrow();
    expect(() => refuseWider(p, memberA, ['lead'])).toThrow(
      expect.objectContaining({
        code: 'SERVICE_ACCOUNT_ROLE_TOO_WIDE',
        data: { roles: ['lead'], rights: ['run.submit', 'run.stop'] },
      }),
    );
    // A deployment's policy where org admins stop runs only in their organisation and leads any run.
    const policy = { ...p, lead: { ...p.lead, 'run.stop': 'any' as const } };
    expect(() => refuseWider(policy, person('o', ['org_admin', 'lead'], 'x'), ['lead'])).not.toThrow();
    expect(() => refuseWider(policy, orgAdminA, ['member'])).not.toThrow();
  });
});

describe('the Control API', () => {
  it('serves the service-account calls to an admin certificate (a project admin) and refuses a site certificate', async () => {
    const l = await start();
    const admin = l.admin('admin@test');
    const { account, secret } = await admin.createServiceAccount({
      name: 'nightly',
      roles: ['lead'],
      org: 'a',
    });
    expect(account).toMatchObject({ name: 'nightly', createdBy: 'admin@test' });
    expect(await l.state.serviceAccounts.authenticate(secret)).toMatchObject({ name: 'sa:nightly' });
    expect((await admin.listServiceAccounts({})).accounts.map((a) => a.name)).toEqual(['nightly']);
    const site = l.control(l.peer('site-1'));
    expect(await outcomeOf(site.listServiceAccounts({}))).toBe('PERMISSION_DENIED');
    expect(await outcomeOf(l.control(undefined).revokeServiceAccount({ name: 'nightly' }))).toBe(
      'UNAUTHENTICATED',
    );
    expect((await admin.revokeServiceAccount({ name: 'nightly' })).account?.revokedAt).toBe(
      BigInt(l.clock.now()),
    );
    await expect(l.state.serviceAccounts.authenticate(secret)).rejects.toMatchObject({
      code: 'SERVICE_ACCOUNT_REVOKED',
    });
  });

  it('takes every caller as the local admin when the SuperLink runs without TLS', async () => {
    const l = await start({ insecure: true });
    const { account } = await l
      .control(undefined)
      .createServiceAccount({ name: 'dev', roles: ['project_admin'] });
    expect(account).toMatchObject({ createdBy: 'local' });
  });
});
