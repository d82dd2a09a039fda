import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCaFolder } from '../../test/support/fixtures.js';
import { DEFAULT_POLICY_YAML } from './policy.js';
import { parsePolicy } from './policy-load.js';
import { issueToken, loadTokenSigner } from './token.js';
import { inspectToken, isoSeconds } from './token-inspect.js';

const NOW = new Date('2025-01-02T10:00:00Z');
const policy = parsePolicy(DEFAULT_POLICY_YAML);
let dir: string;
let ca: string;
let other: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-token-inspect-'));
  ca = join(dir, 'ca');
  other = join(dir, 'other');
  makeCaFolder(ca, 'hospitals');
  makeCaFolder(other, 'elsewhere');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tokenFor = (subject: string, opts: { caDir?: string; now?: Date; role?: string } = {}) =>
  issueToken(loadTokenSigner(opts.caDir ?? ca), {
    subject,
    policy,
    now: opts.now ?? NOW,
    ...(opts.role && { type: 'user' as const, role: opts.role }),
  });

describe('inspectToken', () => {
  it('reports the claims of a token and leaves the signature unchecked without a CA folder', () => {
    const { token, claims } = tokenFor('hospital-1');
    const signer = loadTokenSigner(ca);
    expect(inspectToken(token, { now: NOW })).toEqual({
      token_id: claims.jti,
      subject: 'hospital-1',
      subject_type: 'client',
      roles: [],
      org: null,
      hosts: [],
      issuer: 'pollen:hospitals',
      audience: 'pollen-cert-service',
      issued_at: '2025-01-02T10:00:00Z',
      not_before: '2025-01-02T10:00:00Z',
      expires_at: isoSeconds(claims.exp),
      expired: false,
      max_uses: policy.policy.token.max_uses,
      policy_project: policy.policy.metadata.project,
      policy_version: policy.policy.metadata.version,
      policy_sha256: policy.sha256,
      root_ca_fingerprint: signer.rootFingerprint,
      key_id: signer.kid,
      signature: 'not checked (no CA at hand)',
    });
  });

  it("verifies the signature with the CA folder's token key, and names the folder when it did not sign", () => {
    const { token } = tokenFor('alice@example.com', { role: 'member' });
    expect(inspectToken(token, { caDir: ca, now: NOW })).toMatchObject({
      subject_type: 'user',
      roles: ['member'],
      signature: 'verified',
    });
    const report = inspectToken(token, { caDir: other, now: NOW });
    expect(report.signature).toBe('invalid');
    expect(report.signature_note).toBe(`not signed by the token key of the CA in ${resolve(other)}`);
  });

  it('still verifies an expired token, and says it expired', () => {
    const { token, claims } = tokenFor('hospital-2', { now: new Date('2024-01-01T00:00:00Z') });
    const report = inspectToken(token, { caDir: ca, now: NOW });
    expect(report).toMatchObject({
      signature: 'verified',
      expired: true,
      expires_at: isoSeconds(claims.exp),
    });
    expect(inspectToken(token, { now: new Date((claims.exp - 1) * 1000) }).expired).toBe(false);
    expect(inspectToken(token, { now: new Date(claims.exp * 1000) }).expired).toBe(true);
  });

  it('refuses a token that pins another root than the CA folder, though its key signed it', () => {
    // The same token key beside another root certificate.
    const mixed = join(dir, 'mixed');
    cpSync(ca, mixed, { recursive: true });
    cpSync(join(other, 'rootCA.pem'), join(mixed, 'rootCA.pem'));
    const report = inspectToken(tokenFor('hospital-3').token, { caDir: mixed, now: NOW });
    expect(report.signature).toBe('invalid');
    expect(report.signature_note).toBe(`it pins a different root CA than ${resolve(mixed)}`);
  });

  it('refuses what is not a token', () => {
    expect(() => inspectToken('not.a.token')).toThrow(expect.objectContaining({ code: 'TOKEN_INVALID' }));
  });
});
