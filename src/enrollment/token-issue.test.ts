import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCaFolder } from '../../test/support/fixtures.js';
import { decodeToken, loadTokenSigner } from './token.js';
import { isoSeconds } from './token-inspect.js';
import { checkSubjects, issueEnrollmentTokens } from './token-issue.js';

let dir: string;
let ca: string;
const POLICY = `metadata:
  project: hospitals
  version: "3"
token:
  validity: 12h
  max_uses: 2
site:
  name_pattern: "hospital-*"
user:
  allowed_roles: [member]
  default_role: member
approval:
  rules:
    - {name: all, match: {}, action: pending}
`;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-token-issue-'));
  ca = join(dir, 'ca');
  makeCaFolder(ca, 'hospitals');
  writeFileSync(join(dir, 'policy.yaml'), POLICY);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('issueEnrollmentTokens, local', () => {
  it('signs one token per subject with the CA folder token key, under the policy file', async () => {
    const progress: Array<[number, number]> = [];
    const issued = await issueEnrollmentTokens(
      { kind: 'local', caDir: ca, policyPath: join(dir, 'policy.yaml') },
      { subjects: ['hospital-1', 'hospital-2'], type: 'client' },
      (done, total) => progress.push([done, total]),
    );
    expect(issued).toMatchObject({
      mode: 'local',
      caDir: resolve(ca),
      policy: { source: join(dir, 'policy.yaml'), project: 'hospitals', version: '3' },
    });
    expect(issued.url).toBeUndefined();
    expect(issued.records.map((r) => r.subject)).toEqual(['hospital-1', 'hospital-2']);
    for (const r of issued.records) {
      const claims = decodeToken(r.token);
      expect(r).toEqual({
        subject: claims.sub,
        tokenId: claims.jti,
        subjectType: 'client',
        expiresAt: isoSeconds(claims.exp),
        token: r.token,
      });
      expect(claims.exp - claims.iat).toBe(12 * 3600);
      expect(claims.pollen.max_uses).toBe(2);
      expect(claims.pollen.root_ca_fingerprint).toBe(loadTokenSigner(ca).rootFingerprint);
    }
    expect(progress).toEqual([[2, 2]]);
  });

  it('gives users the role asked for, or the policy default', async () => {
    const local = { kind: 'local' as const, caDir: ca, policyPath: join(dir, 'policy.yaml') };
    const [r] = (await issueEnrollmentTokens(local, { subjects: ['a@example.com'], type: 'user' })).records;
    expect(decodeToken(r!.token).pollen.roles).toEqual(['member']);
    await expect(
      issueEnrollmentTokens(local, { subjects: ['b@example.com'], type: 'user', role: 'lead' }),
    ).rejects.toMatchObject({ code: 'POLICY_ROLE' });
  });

  it('refuses the whole list when one name breaks the policy, before signing any', async () => {
    await expect(
      issueEnrollmentTokens(
        { kind: 'local', caDir: ca, policyPath: join(dir, 'policy.yaml') },
        { subjects: ['hospital-1', 'clinic-1'], type: 'client' },
      ),
    ).rejects.toMatchObject({ code: 'POLICY_SITE_NAME' });
  });
});

describe('issueEnrollmentTokens, remote', () => {
  it('checks every name before it contacts the service', async () => {
    // Nothing listens on port 9: a request would fail with UNAVAILABLE, not with the name.
    const remote = { kind: 'remote' as const, url: 'https://127.0.0.1:9', apiKey: 'k' };
    await expect(
      issueEnrollmentTokens(remote, { subjects: ['site-1', 'site-1'], type: 'client' }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'Subject "site-1" is listed twice' });
    await expect(
      issueEnrollmentTokens(remote, { subjects: ['not an email'], type: 'user' }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('checkSubjects', () => {
  it('accepts distinct well-formed names and refuses repeats and malformed ones', () => {
    expect(() => checkSubjects(['site-1', 'site.2', 'Site_3'], 'client')).not.toThrow();
    expect(() => checkSubjects(['a@example.com'], 'user')).not.toThrow();
    expect(() => checkSubjects(['site-1', 'site-1'], 'client')).toThrow('Subject "site-1" is listed twice');
    expect(() => checkSubjects(['../x'], 'relay')).toThrow(/Invalid relay name/);
    expect(() => checkSubjects(['site-1'], 'user')).toThrow(/e-mail address/);
  });
});
