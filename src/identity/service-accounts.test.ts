/**
 * Service accounts in the LinkState, on both backends: created with a secret shown once and kept
 * only as its SHA-256, authenticated in constant time, refused when unknown, revoked or expired,
 * their last use written at most once a minute, all of it kept across a reopen.
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { expectCode, linkStates, T0 } from '../../test/support/link-states.js';
import type { LinkState } from '../superlink/state.js';
import type { Identity } from './identity.js';
import { constantTime, LAST_USED_WRITE_MS, newServiceAccountSecret } from './service-accounts.js';

const ADMIN: Pick<Identity, 'name' | 'subject'> = { name: 'admin@test', subject: 'admin@test' };
const DAY = 86_400_000;

describe.each(storeBackends('service-accounts'))('service accounts on %s', (backend, makeUrl) => {
  const open = linkStates(backend, makeUrl);
  const { clock } = open;
  afterEach(() => vi.restoreAllMocks());

  async function fresh() {
    const url = await makeUrl();
    return { s: await open.state({ url }), url };
  }
  async function reopen(s: LinkState, url: string) {
    await s.close();
    return open.state({ url });
  }
  const rows = async (url: string) =>
    (await open.store(url)).db.selectFrom('service_accounts').selectAll().execute();

  it('creates an account whose secret is shown once and stored only as its SHA-256', async () => {
    const { s, url } = await fresh();
    const { account, secret } = await s.serviceAccounts.create({
      name: 'ci-train',
      roles: ['member', 'lead', 'lead'],
      org: 'hospital-a',
      expiresAt: T0 + 30 * DAY,
      by: ADMIN,
    });
    expect(secret).toMatch(/^pollen_sa_[A-Za-z0-9_-]{43}$/);
    expect(account).toEqual({
      name: 'ci-train',
      roles: ['lead', 'member'],
      org: 'hospital-a',
      expiresAt: T0 + 30 * DAY,
      createdBy: 'admin@test',
      createdBySubject: 'admin@test',
      createdAt: T0,
      revokedAt: undefined,
      revokedBy: undefined,
      lastUsedAt: undefined,
    });
    const [row] = await rows(url);
    expect(row!.secret_sha256).toBe(createHash('sha256').update(secret).digest('hex'));
    // No column holds the secret, or any part of its random part.
    const stored = JSON.stringify(row);
    expect(stored).not.toContain(secret);
    expect(stored).not.toContain(secret.slice('pollen_sa_'.length, 'pollen_sa_'.length + 16));
    // Two accounts never share a secret.
    const other = await s.serviceAccounts.create({ name: 'ci-eval', roles: ['member'], by: ADMIN });
    expect(other.secret).not.toBe(secret);
    expect((await s.serviceAccounts.list()).map((a) => a.name)).toEqual(['ci-eval', 'ci-train']);
  });

  it('authenticates a secret as its account: kind service_account, sa:NAME, roles and organisation from the definition', async () => {
    const { s } = await fresh();
    const { secret } = await s.serviceAccounts.create({
      name: 'nightly',
      roles: ['lead'],
      org: 'hospital-a',
      expiresAt: T0 + DAY,
      by: ADMIN,
    });
    // Watched (same behaviour): every check goes through the constant-time comparison.
    const compare = vi.spyOn(constantTime, 'equal');
    expect(await s.serviceAccounts.authenticate(secret)).toEqual({
      kind: 'service_account',
      subject: 'nightly',
      name: 'sa:nightly',
      org: 'hospital-a',
      roles: ['lead'],
      expiresAt: T0 + DAY,
    });
    const { secret: forever } = await s.serviceAccounts.create({
      name: 'forever',
      roles: ['member'],
      by: ADMIN,
    });
    const who = await s.serviceAccounts.authenticate(forever);
    expect(who).toMatchObject({ name: 'sa:forever', org: undefined, roles: ['member'] });
    expect(who).not.toHaveProperty('expiresAt');
    // Each check compared two SHA-256 digests in constant time.
    expect(compare).toHaveBeenCalledTimes(2);
    for (const [a, b] of compare.mock.calls) {
      expect([a.byteLength, b.byteLength]).toEqual([32, 32]);
      expect(Buffer.from(a as Uint8Array).equals(Buffer.from(b as Uint8Array))).toBe(true);
    }
  });

  it('refuses an unknown secret (SERVICE_ACCOUNT_INVALID), comparing in constant time all the same', async () => {
    const { s } = await fresh();
    const { secret } = await s.serviceAccounts.create({ name: 'a', roles: ['member'], by: ADMIN });
    // Watched (same behaviour): every check goes through the constant-time comparison.
    const compare = vi.spyOn(constantTime, 'equal');
    // The same length and alphabet, one character changed; and a wholly new secret.
    const last = secret.at(-1) === 'A' ? 'B' : 'A';
    for (const wrong of [secret.slice(0, -1) + last, newServiceAccountSecret()])
      await expectCode(s.serviceAccounts.authenticate(wrong), 'SERVICE_ACCOUNT_INVALID');
    expect(compare).toHaveBeenCalledTimes(2);
    // Not a secret's shape at all: refused before any lookup.
    for (const junk of [
      '',
      'pollen_sa_',
      `${secret}x`,
      secret.replace('pollen_sa_', 'pollen_xx_'),
      'eyJhbGciOi.x.y',
    ])
      await expectCode(s.serviceAccounts.authenticate(junk), 'SERVICE_ACCOUNT_INVALID');
    expect(compare).toHaveBeenCalledTimes(2);
    // The message never echoes what was presented.
    await expect(s.serviceAccounts.authenticate(newServiceAccountSecret())).rejects.toMatchObject({
      message: 'The service-account secret is not valid',
    });
  });

  it('refuses a revoked account (SERVICE_ACCOUNT_REVOKED) at once, and after a reopen', async () => {
    const { s, url } = await fresh();
    const { secret } = await s.serviceAccounts.create({ name: 'old', roles: ['lead'], by: ADMIN });
    await s.serviceAccounts.authenticate(secret);
    clock.t += 5_000;
    const revoked = await s.serviceAccounts.revoke('old', 'admin@test');
    expect(revoked).toMatchObject({ revokedAt: T0 + 5_000, revokedBy: 'admin@test' });
    await expectCode(s.serviceAccounts.authenticate(secret), 'SERVICE_ACCOUNT_REVOKED', { name: 'old' });
    // Revoking again changes nothing.
    clock.t += 5_000;
    expect(await s.serviceAccounts.revoke('old', 'other')).toMatchObject({
      revokedAt: T0 + 5_000,
      revokedBy: 'admin@test',
    });
    await expectCode(s.serviceAccounts.revoke('nope', 'admin@test'), 'SERVICE_ACCOUNT_NOT_FOUND', {
      name: 'nope',
    });
    const again = await reopen(s, url);
    await expectCode(again.serviceAccounts.authenticate(secret), 'SERVICE_ACCOUNT_REVOKED');
    // The name stays taken.
    await expectCode(
      again.serviceAccounts.create({ name: 'old', roles: ['lead'], by: ADMIN }),
      'SERVICE_ACCOUNT_EXISTS',
      { name: 'old' },
    );
  });

  it('refuses an account from its expiry on (SERVICE_ACCOUNT_EXPIRED)', async () => {
    const { s } = await fresh();
    const { secret } = await s.serviceAccounts.create({
      name: 'brief',
      roles: ['member'],
      expiresAt: T0 + 1_000,
      by: ADMIN,
    });
    clock.t += 999;
    await s.serviceAccounts.authenticate(secret);
    clock.t += 1;
    await expectCode(s.serviceAccounts.authenticate(secret), 'SERVICE_ACCOUNT_EXPIRED', { name: 'brief' });
  });

  it('refuses a name taken (also by two creations at once), bad names, roles, organisations and expiries', async () => {
    const { s } = await fresh();
    const twice = await Promise.allSettled([
      s.serviceAccounts.create({ name: 'dup', roles: ['member'], by: ADMIN }),
      s.serviceAccounts.create({ name: 'dup', roles: ['member'], by: ADMIN }),
    ]);
    expect(twice.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(twice.find((r) => r.status === 'rejected')).toMatchObject({
      reason: { code: 'SERVICE_ACCOUNT_EXISTS' },
    });
    const bad = [
      { name: '../x', roles: ['member'] },
      { name: 'x y', roles: ['member'] },
      { name: 'ok', roles: [] },
      { name: 'ok', roles: ['admin'] },
      { name: 'ok', roles: ['member'], org: 'a\nb' },
      { name: 'ok', roles: ['member'], expiresAt: T0 },
      { name: 'ok', roles: ['member'], expiresAt: Number.NaN },
    ];
    for (const input of bad)
      await expectCode(s.serviceAccounts.create({ ...input, by: ADMIN }), 'INVALID_ARGUMENT');
    await expect(s.serviceAccounts.create({ name: 'x', roles: ['admin'], by: ADMIN })).rejects.toMatchObject({
      message: 'Not a Pollen role: admin',
      hint: expect.stringContaining('project_admin, org_admin, lead, member'),
    });
    expect((await s.serviceAccounts.list()).map((a) => a.name)).toEqual(['dup']);
  });

  it('writes the last use at most once a minute, and keeps it across a reopen', async () => {
    const { s, url } = await fresh();
    const { secret } = await s.serviceAccounts.create({ name: 'busy', roles: ['lead'], by: ADMIN });
    const lastUsed = async () => (await rows(url))[0]!.last_used_at;
    await s.serviceAccounts.authenticate(secret);
    expect(Number(await lastUsed())).toBe(T0);
    for (let i = 1; i <= 10; i++) {
      clock.t = T0 + i * 1_000;
      await s.serviceAccounts.authenticate(secret);
    }
    // Every use counts in memory, and lists show it; the store has the first one.
    expect((await s.serviceAccounts.get('busy'))?.lastUsedAt).toBe(T0 + 10_000);
    expect(Number(await lastUsed())).toBe(T0);
    clock.t = T0 + LAST_USED_WRITE_MS;
    await s.serviceAccounts.authenticate(secret);
    expect(Number(await lastUsed())).toBe(T0 + LAST_USED_WRITE_MS);
    const again = await reopen(s, url);
    expect(await again.serviceAccounts.get('busy')).toMatchObject({
      lastUsedAt: T0 + LAST_USED_WRITE_MS,
      roles: ['lead'],
    });
    // The reopened state knows the last write: no write until a minute after it.
    clock.t += 1_000;
    await again.serviceAccounts.authenticate(secret);
    expect(Number(await lastUsed())).toBe(T0 + LAST_USED_WRITE_MS);
  });

  it('keeps accounts across a reopen: the same secret authenticates the same account', async () => {
    const { s, url } = await fresh();
    const { secret } = await s.serviceAccounts.create({
      name: 'kept',
      roles: ['org_admin'],
      org: 'hospital-b',
      expiresAt: T0 + DAY,
      by: { name: 'alice@example.com', subject: 'sub-alice' },
    });
    const again = await reopen(s, url);
    expect(await again.serviceAccounts.authenticate(secret)).toMatchObject({
      name: 'sa:kept',
      roles: ['org_admin'],
      org: 'hospital-b',
      expiresAt: T0 + DAY,
    });
    expect(await again.serviceAccounts.get('kept')).toMatchObject({
      createdBy: 'alice@example.com',
      createdBySubject: 'sub-alice',
      createdAt: T0,
    });
  });
});
