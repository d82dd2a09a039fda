/**
 * Federations and invitations in the LinkState, on both backends: a federation, its members and
 * its nodes kept across a reopen; a node serving by addition or by its certificate's organisation;
 * an invitation's code kept only as its SHA-256; of accepts racing (on PostgreSQL: on two
 * SuperLinks sharing the store), exactly one wins.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { expectCode, linkStates } from '../../test/support/link-states.js';
import type { Identity } from '../identity/identity.js';

const OPERATOR: Identity = {
  kind: 'certificate',
  subject: 'operator@test',
  name: 'operator@test',
  org: 'Alpha Clinic',
  roles: ['project_admin'],
};
const ADA: Identity = { kind: 'user', subject: 'ada', name: 'ada', org: 'Alpha Clinic', roles: [] };

describe.each(storeBackends('federations'))('federations on %s', (backend, makeUrl) => {
  const open = linkStates(backend, makeUrl);

  it('keeps a federation, its members and nodes across a reopen; nodes serve by addition or organisation', async () => {
    const url = await makeUrl();
    const s = await open.state({ url });
    await s.federations.create({ name: 'alpha', nodeOrgs: ['Alpha Clinic', ' Alpha Clinic '], by: OPERATOR });
    await expectCode(s.federations.create({ name: 'alpha', by: OPERATOR }), 'FEDERATION_EXISTS');
    await expectCode(s.federations.create({ name: 'default', by: OPERATOR }), 'FEDERATION_NAME_RESERVED');
    await s.federations.addNode('alpha', 'n-added', 'operator@test');
    await s.close();
    const again = await open.state({ url });
    const f = again.federations;
    expect(f.get('alpha')).toMatchObject({ nodeOrgs: ['Alpha Clinic'], createdBy: 'operator@test' });
    expect(f.membersOf('alpha').map((m) => [m.subject, m.role])).toEqual([
      ['certificate:operator@test', 'project_admin'],
    ]);
    expect(f.serves('alpha', { nodeId: 'n-added', certOrg: null })).toBe(true);
    expect(f.serves('alpha', { nodeId: 'n-org', certOrg: 'Alpha Clinic' })).toBe(true);
    expect(f.serves('alpha', { nodeId: 'n-other', certOrg: 'Beta Hospital' })).toBe(false);
    expect(f.serves('default', { nodeId: 'n-other', certOrg: null })).toBe(true);
    expect(await f.removeNode('alpha', 'n-added')).toBe(true);
    expect(await f.removeNode('alpha', 'n-added')).toBe(false);
    await again.close();
  });

  it('keeps only the SHA-256 of a code; of accepts racing on two SuperLinks, exactly one wins', async () => {
    const url = await makeUrl();
    const a = await open.state({ url });
    await a.federations.create({ name: 'lab', by: OPERATOR });
    const { invitation, code } = await a.invitations.invite({
      federation: 'lab',
      subject: 'ada',
      role: 'lead',
      by: OPERATOR,
    });
    const row = await (await open.store(url)).db
      .selectFrom('federation_invitations')
      .selectAll()
      .where('id', '=', invitation.id)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(code);
    expect(row.code_sha256).toBe(createHash('sha256').update(code).digest('hex'));
    // PostgreSQL may be shared by several SuperLinks; a SQLite file is owned by one.
    const b = backend === 'postgres' ? await open.state({ url }) : a;
    const outcomes = await Promise.all(
      [a, b, a, b].map((s) =>
        s.invitations.accept(code, ADA).then(
          () => 'ok',
          (e: { code?: string }) => e.code,
        ),
      ),
    );
    expect(outcomes.sort()).toEqual(['INVITATION_USED', 'INVITATION_USED', 'INVITATION_USED', 'ok']);
    await b.federations.load();
    expect(b.federations.membership('lab', ADA)?.role).toBe('lead');
    await a.close();
    await b.close();
  });
});
