// `pollen policy …` run in-process through the CLI's main(), with a clean environment.

import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_YAML } from '../src/enrollment/policy.js';
import { ExitCode } from '../src/errors.js';
import { pollenInProcess } from './support/cli.js';
import { SEED_CUSTOM_POLICY } from './support/fixtures.js';

/** The CLI in-process, with a clean environment (PATH and `env`), as a spawned `pollen` sees it. */
async function pollen(args: string[], env: Record<string, string> = {}) {
  const r = await pollenInProcess(args, { env, clean: true });
  return { ...r, json: () => r.json<Record<string, unknown> & { ok: boolean }>() };
}

const CUSTOM = SEED_CUSTOM_POLICY;
/** The Certificate Service settings the seed's policy needs: it sends e-mail and lists no recipient. */
const MAIL = ['--smtp-url', 'smtp://mail.example.org:25', '--admin-email', 'fl-admins@example.org'];

let dir: string;
let custom: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-cli-policy-'));
  custom = join(dir, 'custom.yaml');
  writeFileSync(custom, CUSTOM);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('pollen policy check', () => {
  it('summarises a valid policy (text)', async () => {
    const r = await pollen(['policy', 'check', custom, ...MAIL]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`valid enrollment policy ${custom}`);
    expect(r.stdout).toContain('my-federation 1.0');
    expect(r.stdout).toMatch(/tokens\s+valid 7d, max 1 use each/);
    expect(r.stdout).toMatch(/site names\s+hospital-\*/);
    expect(r.stdout).toMatch(/notifications\s+on \(email\)/);
    expect(r.stdout).toMatch(
      /internal-auto-approve.*name hospital-\*, from 10\.0\.0\.0\/8, 172\.16\.0\.0\/12.*approve/,
    );
    expect(r.stdout).toMatch(/external-pending.*name \*, any IP.*pending/);
  });

  it('--json prints the source, the hash of the exact bytes and the normalised policy', async () => {
    const r = await pollen(['policy', 'check', custom, '--json', ...MAIL]);
    expect(r.code).toBe(0);
    const j = r.json();
    expect(j).toMatchObject({
      ok: true,
      source: custom,
      sha256: createHash('sha256').update(readFileSync(custom)).digest('hex'),
      project: 'my-federation',
      version: '1.0',
      policy: {
        token: { validity: '7d', validity_ms: 604_800_000, max_uses: 1 },
        approval: { method: 'policy' },
        notifications: { enabled: true, channels: { email: { enabled: true, to: [] } } },
      },
    });
  });

  it('checks the built-in policy without FILE, or POLLEN_ENROLLMENT_POLICY', async () => {
    const builtIn = await pollen(['policy', 'check', '--json']);
    expect(builtIn.json()).toMatchObject({ source: 'built-in', project: 'pollen-default' });
    const env = await pollen(['policy', 'check', '--json', '--admin-email', 'fl-admins@example.org'], {
      POLLEN_ENROLLMENT_POLICY: custom,
      POLLEN_SMTP_URL: 'smtp://mail.example.org:25',
    });
    expect(env.json()).toMatchObject({ source: custom, project: 'my-federation' });
  });

  it('reports everything the Certificate Service would refuse at start, naming the field and the flag', async () => {
    const r = await pollen(['policy', 'check', custom]);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    expect(r.stderr).toContain(
      `error[POLICY_INVALID]: The Certificate Service cannot run enrollment policy ${custom}, 2 problems:`,
    );
    expect(r.stderr).toMatch(
      /notifications\.channels\.email\.enabled \(line 42\): e-mail is enabled but the service has no SMTP relay: start it with --smtp-url smtp:\/\/HOST:PORT \(or POLLEN_SMTP_URL\), or set this to false/,
    );
    expect(r.stderr).toMatch(
      /notifications\.channels\.email\.to \(line 41\): lists no recipient and the service has no --admin-email/,
    );
    expect(r.stderr).toContain('hint: Change the field or give the service the flag named above');
    // Each setting fixes its own problem; --json names what is left.
    const half = await pollen([
      'policy',
      'check',
      custom,
      '--json',
      '--smtp-url',
      'smtp://mail.example.org:25',
    ]);
    expect(half.code).toBe(ExitCode.INVALID_INPUT);
    expect(half.json()).toMatchObject({
      ok: false,
      error: { code: 'POLICY_INVALID', issues: [{ path: 'notifications.channels.email.to', line: 41 }] },
    });
    expect((half.json()['error'] as { issues: unknown[] }).issues).toHaveLength(1);
  });

  it('an invalid policy: POLICY_INVALID naming field and line, exit 3', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      CUSTOM.replace('action: pending', 'action: maybe').replace(
        '  max_uses: 1',
        '  max_uses: 1\n  reuse: true',
      ),
    );
    const r = await pollen(['policy', 'check', bad]);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    expect(r.stderr).toContain('error[POLICY_INVALID]');
    expect(r.stderr).toContain('token.reuse (line 9): is not a supported field');
    expect(r.stderr).toContain('approval.rules[1].action (line 37): must be one of approve, reject, pending');
    const j = await pollen(['policy', 'check', bad, '--json']);
    expect(j.code).toBe(ExitCode.INVALID_INPUT);
    expect(j.json()).toMatchObject({
      ok: false,
      error: {
        code: 'POLICY_INVALID',
        issues: [
          { path: 'token.reuse', line: 9, message: expect.stringContaining('not a supported field') },
          { path: 'approval.rules[1].action', line: 37, message: 'must be one of approve, reject, pending' },
        ],
      },
    });
  });

  it('refuses unsupported approval methods and unknown roles', async () => {
    const bad = join(dir, 'method.yaml');
    writeFileSync(
      bad,
      CUSTOM.replace('method: policy', 'method: manual').replace('    - org_admin', '    - owner'),
    );
    const r = await pollen(['policy', 'check', bad, '--json']);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    const issues = (r.json()['error'] as { issues: Array<{ path: string; line: number }> }).issues;
    expect(issues.map((i) => [i.path, i.line])).toEqual([
      ['user.allowed_roles[2]', 17],
      ['approval.method', 21],
    ]);
  });

  it('a missing file: FILE_NOT_FOUND, exit 4', async () => {
    const r = await pollen(['policy', 'check', join(dir, 'nope.yaml')]);
    expect(r.code).toBe(ExitCode.NOT_FOUND);
    expect(r.stderr).toContain('FILE_NOT_FOUND');
  });
});

describe('pollen policy explain', () => {
  /** `pollen policy explain` of the custom policy for `site` from `ip`, with `more` flags. */
  const explain = (site: string, ip: string, ...more: string[]) =>
    pollen(['policy', 'explain', custom, '--site', site, '--ip', ip, ...more]);

  it('approve: the first rule matched', async () => {
    const r = await explain('hospital-1', '10.1.2.3', '--json');
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({
      request: { name: 'hospital-1', type: 'client', ip: '10.1.2.3' },
      decision: { action: 'approve', rule: 'internal-auto-approve' },
      rules: [{ rule: 'internal-auto-approve', matched: true }],
      notEvaluated: ['external-pending'],
    });
  });

  it('pending: explains why the earlier rule did not match', async () => {
    const r = await explain('hospital-1', '203.0.113.9');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('decision: pending by rule "external-pending"');
    expect(r.stdout).toContain(
      '✗ rule 0 "internal-auto-approve" (approve): no match — name "hospital-1" matches "hospital-*"; IP 203.0.113.9 is not in 10.0.0.0/8, 172.16.0.0/12',
    );
    expect(r.stdout).toContain('✓ rule 1 "external-pending" (pending): matched');
  });

  it('IPv4-mapped IPv6 matches IPv4 ranges', async () => {
    const r = await explain('hospital-1', '::ffff:172.16.5.4', '--json');
    expect(r.json()).toMatchObject({ decision: { action: 'approve', rule: 'internal-auto-approve' } });
  });

  it('reject: the site name fails site.name_pattern; users skip that check', async () => {
    const r = await explain('clinic-1', '10.1.2.3', '--json');
    expect(r.json()).toMatchObject({
      decision: {
        action: 'reject',
        reason: 'site name "clinic-1" does not match site.name_pattern "hospital-*"',
      },
      siteNameCheck: { applies: true, matched: false },
      rules: [],
    });
    const text = await explain('clinic-1', '10.1.2.3');
    expect(text.stdout).toContain('decision: reject');
    const user = await explain('alice@example.com', '10.0.0.1', '--type', 'user', '--json');
    expect(user.json()).toMatchObject({ decision: { action: 'pending' }, siteNameCheck: { applies: false } });
  });

  it('no rule matched → reject', async () => {
    const lan = join(dir, 'lan.yaml');
    writeFileSync(
      lan,
      'metadata: {project: p}\napproval:\n  rules:\n    - {name: lan, match: {source_ips: ["192.168.0.0/16"]}, action: approve}\n',
    );
    const r = await pollen(['policy', 'explain', lan, '--site', 'x-1', '--ip', '2001:db8::1', '--json']);
    expect(r.json()).toMatchObject({
      decision: { action: 'reject', reason: 'no rule matched' },
      rules: [{ rule: 'lan', matched: false, reason: 'any name; IP 2001:db8::1 is not in 192.168.0.0/16' }],
    });
  });

  it('usage errors: a bad IP or type, a missing --site', async () => {
    expect((await explain('h', '10.0.0.300')).code).toBe(ExitCode.USAGE);
    expect((await explain('h', '10.0.0.1', '--type', 'robot')).code).toBe(ExitCode.USAGE);
    expect((await pollen(['policy', 'explain', custom, '--ip', '10.0.0.1'])).code).toBe(ExitCode.USAGE);
  });
});

describe('pollen policy default', () => {
  it('prints the built-in policy, which checks; -o writes it', async () => {
    const r = await pollen(['policy', 'default']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(DEFAULT_POLICY_YAML);
    const file = join(dir, 'start.yaml');
    expect((await pollen(['policy', 'default', '-o', file])).code).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(DEFAULT_POLICY_YAML);
    expect((await pollen(['policy', 'check', file])).code).toBe(0);
    expect((await pollen(['policy', 'default', '-o', file])).code).toBe(ExitCode.CONFLICT);
  });

  it('help teaches with examples', async () => {
    for (const cmd of [['policy'], ['policy', 'check'], ['policy', 'explain']]) {
      const r = await pollen([...cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Examples:');
    }
    expect((await pollen(['policy', '--help'])).stdout).toContain('POLLEN_ENROLLMENT_POLICY');
  });
});
