import { describe, expect, it } from 'vitest';
import { codeOf } from '../../test/support/errors.js';
import { type Identity, LOCAL_ADMIN, type Role } from './identity.js';
import { type AccessPolicy, authorize, covers, DEFAULT_ACCESS_POLICY, scopeOf } from './rights.js';

const person = (roles: Role[], org: string | undefined = 'hospital-a'): Identity => ({
  kind: 'user',
  subject: 'u-ada',
  name: 'ada@hospital-a.org',
  org,
  roles,
});

describe('scopeOf', () => {
  it('is the widest scope any of the roles grants, and undefined when none does (default deny)', () => {
    expect(scopeOf(DEFAULT_ACCESS_POLICY, person(['lead']), 'run.stop')).toBe('own');
    expect(scopeOf(DEFAULT_ACCESS_POLICY, person(['lead', 'org_admin']), 'run.stop')).toBe('org');
    expect(scopeOf(DEFAULT_ACCESS_POLICY, person(['lead', 'project_admin']), 'run.stop')).toBe('any');
    expect(scopeOf(DEFAULT_ACCESS_POLICY, person(['member']), 'run.submit')).toBeUndefined();
    expect(scopeOf(DEFAULT_ACCESS_POLICY, person([]), 'run.view')).toBeUndefined();
    expect(scopeOf(DEFAULT_ACCESS_POLICY, LOCAL_ADMIN, 'audit.read')).toBe('any');
  });

  it('reads only the policy it is given', () => {
    const strict: AccessPolicy = {
      project_admin: {},
      org_admin: {},
      lead: {},
      member: { 'run.view': 'org' },
    };
    expect(scopeOf(strict, person(['project_admin']), 'run.view')).toBeUndefined();
    expect(scopeOf(strict, person(['member']), 'run.view')).toBe('org');
  });
});

describe('covers', () => {
  it('any covers everything; org the same organisation; own what the caller created', () => {
    const ada = person(['lead']);
    expect(covers('any', ada, {})).toBe(true);
    expect(covers('org', ada, { org: 'hospital-a' })).toBe(true);
    expect(covers('org', ada, { org: 'hospital-b' })).toBe(false);
    expect(covers('org', ada, {})).toBe(false);
    expect(covers('own', ada, { owner: 'u-ada' })).toBe(true);
    expect(covers('own', ada, { owner: 'u-bob', org: 'hospital-a' })).toBe(false);
    expect(covers('own', ada, {})).toBe(false);
  });

  it('never matches an organisation for a caller who has none', () => {
    const nobody = person(['org_admin'], undefined);
    expect(covers('org', nobody, { org: undefined })).toBe(false);
    expect(covers('org', nobody, {})).toBe(false);
  });
});

describe('authorize', () => {
  it('returns the scope when the right covers the target', () => {
    expect(authorize(DEFAULT_ACCESS_POLICY, person(['lead']), 'run.submit')).toBe('any');
    expect(
      authorize(DEFAULT_ACCESS_POLICY, person(['org_admin']), 'node.manage', { org: 'hospital-a' }),
    ).toBe('org');
    expect(authorize(DEFAULT_ACCESS_POLICY, person(['lead']), 'run.stop', { owner: 'u-ada' })).toBe('own');
  });

  it('refuses a right no role grants with RIGHT_MISSING, and a target outside the scope with WRONG_ORGANISATION', () => {
    expect(codeOf(() => authorize(DEFAULT_ACCESS_POLICY, person(['member']), 'run.submit'))).toBe(
      'RIGHT_MISSING',
    );
    expect(
      codeOf(() =>
        authorize(DEFAULT_ACCESS_POLICY, person(['org_admin']), 'node.manage', { org: 'hospital-b' }),
      ),
    ).toBe('WRONG_ORGANISATION');
    expect(
      codeOf(() => authorize(DEFAULT_ACCESS_POLICY, person(['lead']), 'run.stop', { owner: 'u-bob' })),
    ).toBe('WRONG_ORGANISATION');
  });

  it('says who may not do what, without naming more than the roles and organisation', () => {
    expect(() => authorize(DEFAULT_ACCESS_POLICY, person(['member']), 'run.submit')).toThrow(
      'ada@hospital-a.org may not run.submit: no role of theirs grants it',
    );
    expect(() =>
      authorize(DEFAULT_ACCESS_POLICY, person(['org_admin']), 'enrollment.decide', { org: 'hospital-b' }),
    ).toThrow('ada@hospital-a.org may enrollment.decide only within organisation hospital-a');
    expect(() => authorize(DEFAULT_ACCESS_POLICY, person(['lead']), 'run.stop', { owner: 'u-bob' })).toThrow(
      'ada@hospital-a.org may run.stop only on what they created',
    );
  });
});
