/**
 * Creating federations and inviting people into them, in memory (Connect's router transport,
 * SQLite, a manual clock): an invitation is single use, expires, is bound to a verified e-mail or
 * a subject, can be revoked until it is used, and of two accepts racing exactly one wins. Nobody
 * gives a role wider than their own in the federation.
 */
import { describe, expect, it } from 'vitest';
import { outcomeOf } from './support/errors.js';
import { localTokens } from './support/local-tokens.js';
import { memoryLinks } from './support/memory-link.js';

const start = memoryLinks('federation-invitations');
const DAY = 86_400_000;

async function lab() {
  const tokens = await localTokens();
  const l = await start({ control: { tokens: tokens.verifier } });
  const operator = l.federations(l.peer('operator@test', { type: 'admin' }));
  await operator.createFederation({ name: 'lab', description: 'A study' });
  /** A person logged in with no role of their own. */
  const person = async (sub: string, o: { email?: string; verified?: boolean; org?: string } = {}) => {
    const token = await tokens.sign(sub, {
      roles: [],
      email: o.email ?? `${sub}@example.org`,
      emailVerified: o.verified ?? true,
      ...(o.org !== undefined && { org: o.org }),
    });
    return l.federations(undefined, { authorization: `Bearer ${token}` });
  };
  return { l, operator, person };
}

describe('creating a federation', () => {
  it('is for project admins; `default` is reserved and a name is taken once', async () => {
    const { l, operator, person } = await lab();
    const ada = await person('ada');
    expect(await outcomeOf(ada.createFederation({ name: 'mine' }))).toBe('RIGHT_MISSING');
    expect(await outcomeOf(operator.createFederation({ name: 'default' }))).toBe('FEDERATION_NAME_RESERVED');
    expect(await outcomeOf(operator.createFederation({ name: 'lab' }))).toBe('FEDERATION_EXISTS');
    expect(await outcomeOf(operator.createFederation({ name: '../x' }))).toBe('INVALID_ARGUMENT');
    expect(await outcomeOf(operator.createFederation({ name: 'x', nodeOrgs: ['bad\norg'] }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(l.logs).toContainEqual(
      expect.objectContaining({ event: 'federation.created', federation: 'lab', by: 'operator@test' }),
    );
    // `default` has no members or invitations of its own.
    expect(
      await outcomeOf(operator.inviteMember({ federation: 'default', subject: 'a', role: 'member' })),
    ).toBe('FEDERATION_DEFAULT_IMPLICIT');
  });
});

describe('an invitation', () => {
  it('by e-mail is accepted once, by the verified address it names, with the role it names', async () => {
    const { l, operator, person } = await lab();
    const { invitation, code } = await operator.inviteMember({
      federation: 'lab',
      email: 'Ada@Example.org',
      role: 'lead',
    });
    expect(code).toMatch(/^pollen_inv_[A-Za-z0-9_-]{43}$/);
    expect(invitation).toMatchObject({
      federation: 'lab',
      email: 'ada@example.org',
      role: 'lead',
      status: 'pending',
    });
    expect(Number(invitation!.expiresAt - invitation!.createdAt)).toBe(7 * DAY);
    // Only the code's hash is kept.
    const rows = JSON.stringify(await l.state.invitations.pending('lab'));
    expect(rows).not.toContain(code);
    const shown = await operator.getFederation({ name: 'lab' });
    expect(shown.invitations.map((i) => i.id)).toEqual([invitation!.id]);

    const other = await person('bob', { email: 'bob@example.org' });
    const unverified = await person('ada2', { email: 'ada@example.org', verified: false });
    const refusals = {
      otherEmail: await outcomeOf(other.acceptInvitation({ code })),
      unverified: await outcomeOf(unverified.acceptInvitation({ code })),
      unknown: await outcomeOf(other.acceptInvitation({ code: `pollen_inv_${'A'.repeat(43)}` })),
      malformed: await outcomeOf(other.acceptInvitation({ code: 'not-a-code' })),
    };
    expect(refusals).toEqual({
      otherEmail: 'INVITATION_WRONG_IDENTITY',
      unverified: 'INVITATION_WRONG_IDENTITY',
      unknown: 'INVITATION_NOT_FOUND',
      malformed: 'INVITATION_NOT_FOUND',
    });
    const ada = await person('ada', { email: 'ada@example.org', org: 'Alpha Clinic' });
    const accepted = await ada.acceptInvitation({ code });
    expect(accepted.member).toMatchObject({
      subject: 'user:ada',
      role: 'lead',
      email: 'ada@example.org',
      org: 'Alpha Clinic',
    });
    expect(accepted.federation).toMatchObject({ name: 'lab', myRole: 'lead' });
    expect(await outcomeOf(ada.acceptInvitation({ code }))).toBe('INVITATION_USED');
    expect(await outcomeOf(operator.revokeInvitation({ id: invitation!.id }))).toBe('INVITATION_USED');
    expect((await ada.listFederations({})).federations.map((f) => f.name)).toEqual(['default', 'lab']);
    expect((await operator.getFederation({ name: 'lab' })).invitations).toEqual([]);
  });

  it('by subject is for that identity only', async () => {
    const { operator, person } = await lab();
    const { code } = await operator.inviteMember({ federation: 'lab', subject: 'ada', role: 'member' });
    expect(await outcomeOf((await person('bob')).acceptInvitation({ code }))).toBe(
      'INVITATION_WRONG_IDENTITY',
    );
    // A certificate named like the subject is another identity.
    const cert = await operator.inviteMember({
      federation: 'lab',
      subject: 'certificate:ada',
      role: 'member',
    });
    expect(await outcomeOf((await person('ada')).acceptInvitation({ code: cert.code }))).toBe(
      'INVITATION_WRONG_IDENTITY',
    );
    expect((await (await person('ada')).acceptInvitation({ code })).member?.subject).toBe('user:ada');
  });

  it('expires (7 days by default, at most 90)', async () => {
    const { l, operator, person } = await lab();
    const { code } = await operator.inviteMember({
      federation: 'lab',
      subject: 'ada',
      role: 'member',
      ttlSeconds: 3600,
    });
    expect(
      await outcomeOf(
        operator.inviteMember({ federation: 'lab', subject: 'ada', role: 'member', ttlSeconds: 91 * 86_400 }),
      ),
    ).toBe('INVALID_ARGUMENT');
    l.clock.advance(3600_000);
    expect(await outcomeOf((await person('ada')).acceptInvitation({ code }))).toBe('INVITATION_EXPIRED');
  });

  it('is revoked until it is used, by whoever may invite', async () => {
    const { operator, person } = await lab();
    const { invitation, code } = await operator.inviteMember({
      federation: 'lab',
      subject: 'ada',
      role: 'member',
    });
    const outsider = await person('eve');
    // Someone outside the federation cannot tell it exists.
    expect(await outcomeOf(outsider.revokeInvitation({ id: invitation!.id }))).toBe('INVITATION_NOT_FOUND');
    expect((await operator.revokeInvitation({ id: invitation!.id })).invitation?.status).toBe('revoked');
    expect(await outcomeOf((await person('ada')).acceptInvitation({ code }))).toBe('INVITATION_REVOKED');
    expect(await outcomeOf(operator.revokeInvitation({ id: 'inv-none' }))).toBe('INVITATION_NOT_FOUND');
  });

  it('accepted twice at once: exactly one accept wins', async () => {
    const { l, operator, person } = await lab();
    const { code } = await operator.inviteMember({ federation: 'lab', subject: 'ada', role: 'member' });
    const ada = await person('ada');
    const outcomes = await Promise.all([1, 2, 3, 4].map(() => outcomeOf(ada.acceptInvitation({ code }))));
    expect(outcomes.sort()).toEqual(['INVITATION_USED', 'INVITATION_USED', 'INVITATION_USED', 'ok']);
    expect(l.state.federations.membersOf('lab').filter((m) => m.subject === 'user:ada')).toHaveLength(1);
  });
});

describe('managing members', () => {
  it('gives and takes away no role wider than the caller has in the federation', async () => {
    const { operator, person } = await lab();
    const join = async (sub: string, role: string) => {
      const { code } = await operator.inviteMember({ federation: 'lab', subject: sub, role });
      const p = await person(sub);
      await p.acceptInvitation({ code });
      return p;
    };
    const orgAdmin = await join('oa', 'org_admin');
    const member = await join('mem', 'member');
    await join('boss', 'project_admin');
    expect(await outcomeOf(member.inviteMember({ federation: 'lab', subject: 'x', role: 'member' }))).toBe(
      'RIGHT_MISSING',
    );
    expect(
      await outcomeOf(orgAdmin.inviteMember({ federation: 'lab', subject: 'x', role: 'project_admin' })),
    ).toBe('FEDERATION_ROLE_TOO_WIDE');
    expect(await outcomeOf(orgAdmin.inviteMember({ federation: 'lab', subject: 'x', role: 'member' }))).toBe(
      'ok',
    );
    expect(await outcomeOf(orgAdmin.removeMember({ federation: 'lab', subject: 'user:boss' }))).toBe(
      'FEDERATION_ROLE_TOO_WIDE',
    );
    expect(await outcomeOf(orgAdmin.removeMember({ federation: 'lab', subject: 'user:nobody' }))).toBe(
      'MEMBER_NOT_FOUND',
    );
    await orgAdmin.removeMember({ federation: 'lab', subject: 'user:mem' });
    // Removed: the federation is gone for them.
    expect(await outcomeOf(member.getFederation({ name: 'lab' }))).toBe('FEDERATION_NOT_FOUND');
    expect(
      (await operator.listMembers({ federation: 'lab' })).members.map((m) => `${m.subject}:${m.role}`),
    ).toEqual(['certificate:operator@test:project_admin', 'user:boss:project_admin', 'user:oa:org_admin']);
    expect(await outcomeOf(operator.inviteMember({ federation: 'lab', subject: 'x', role: 'owner' }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await outcomeOf(operator.inviteMember({ federation: 'lab', role: 'member' }))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});
