import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SEED_CUSTOM_POLICY } from '../../test/support/fixtures.js';
import { PollenError } from '../errors.js';
import { DEFAULT_POLICY_YAML, decide, explain, hostAllowed, notificationTargets } from './policy.js';
import { loadPolicy, parsePolicy } from './policy-load.js';
import { ipInRanges, matchNamePattern, parseCidr, parseDuration } from './policy-match.js';

const CUSTOM = SEED_CUSTOM_POLICY;

/** Parse and return the POLICY_INVALID issues (fails the test if the text is valid). */
function issues(text: string): Array<{ path: string; line: number; message: string }> {
  try {
    parsePolicy(text, 'test.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(PollenError);
    const err = e as PollenError;
    expect(err.code).toBe('POLICY_INVALID');
    expect(err.exitCode).toBe(3);
    return err.data?.['issues'] as Array<{ path: string; line: number; message: string }>;
  }
  throw new Error('expected POLICY_INVALID');
}

function errorMessage(text: string): string {
  try {
    parsePolicy(text, 'test.yaml');
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected POLICY_INVALID');
}

/** A minimal valid policy with one placeholder line to replace. */
const base = (extra = '') => `metadata:
  project: p
approval:
  rules:
    - name: r
      match: {}
      action: approve
${extra}`;

describe('built-in and seed policies', () => {
  it('parses the built-in default (project pollen-default)', () => {
    const l = loadPolicy();
    expect(l.source).toBe('built-in');
    expect(l.text).toBe(DEFAULT_POLICY_YAML);
    expect(l.policy.metadata).toEqual({
      project: 'pollen-default',
      description: 'Built-in default policy for quick start',
      version: '1.0',
    });
    expect(l.policy.token).toEqual({ validity: '7d', validity_ms: 7 * 86_400_000, max_uses: 1 });
    expect(l.policy.site.name_pattern).toBe('*');
    expect(l.policy.user).toEqual({ allowed_roles: ['lead', 'member', 'org_admin'], default_role: 'lead' });
    expect(l.policy.approval).toEqual({
      method: 'policy',
      rules: [
        {
          name: 'auto-approve-all',
          description: 'Auto-approve all enrollment requests',
          match: {},
          action: 'approve',
        },
      ],
    });
    expect(l.policy.notifications).toEqual({ enabled: false, channels: {} });
    expect(notificationTargets(l.policy)).toEqual({});
  });

  it("parses the seed's custom policy", () => {
    const { policy } = parsePolicy(CUSTOM, 'custom.yaml');
    expect(policy.metadata.project).toBe('my-federation');
    expect(policy.site.name_pattern).toBe('hospital-*');
    expect(policy.approval.rules.map((r) => [r.name, r.action])).toEqual([
      ['internal-auto-approve', 'approve'],
      ['external-pending', 'pending'],
    ]);
    expect(policy.approval.rules[0]!.match.source_ips).toEqual(['10.0.0.0/8', '172.16.0.0/12']);
    expect(policy.notifications).toEqual({ enabled: true, channels: { email: { enabled: true, to: [] } } });
    expect(notificationTargets(policy)).toEqual({ email: { enabled: true, to: [] } });
  });

  it('hashes the exact bytes and loads files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pollen-policy-'));
    try {
      const file = join(dir, 'p.yaml');
      writeFileSync(file, CUSTOM);
      const l = loadPolicy(file);
      expect(l.source).toBe(file);
      expect(l.sha256).toBe(createHash('sha256').update(readFileSync(file)).digest('hex'));
      expect(l.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(parsePolicy(CUSTOM).sha256).toBe(l.sha256);
      // One byte more (a trailing newline) is another policy.
      expect(parsePolicy(`${CUSTOM}\n`).sha256).not.toBe(l.sha256);
      expect(() => loadPolicy(join(dir, 'missing.yaml'))).toThrow(
        expect.objectContaining({ code: 'FILE_NOT_FOUND' }),
      );
      expect(() => loadPolicy(dir)).toThrow(expect.objectContaining({ code: 'POLICY_INVALID' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps an unquoted version as written and fills documented defaults', () => {
    const { policy } = parsePolicy(base().replace('  project: p', '  project: p\n  version: 1.0'));
    expect(policy.metadata.version).toBe('1.0');
    expect(policy.token).toEqual({ validity: '7d', validity_ms: 604_800_000, max_uses: 1 });
    expect(policy.site.name_pattern).toBe('*');
    expect(policy.user.default_role).toBe('lead');
    expect(policy.approval.method).toBe('policy');
  });
});

describe('validation errors name the field and the line', () => {
  it('the brief example: a bad rule action', () => {
    const text = CUSTOM.replace('action: pending', 'action: allow');
    expect(issues(text)).toEqual([
      { path: 'approval.rules[1].action', line: 36, message: 'must be one of approve, reject, pending' },
    ]);
    expect(errorMessage(text)).toBe(
      'Invalid enrollment policy test.yaml: approval.rules[1].action (line 36): must be one of approve, reject, pending',
    );
  });

  it.each([
    ['unknown top-level field', base('extra: 1\n'), 'extra', 8, /not a supported field/],
    [
      'unknown nested field',
      base().replace('      match: {}', '      match: {}\n      when: now'),
      'approval.rules[0].when',
      7,
      /not a supported field/,
    ],
    [
      'unknown match field',
      base().replace('match: {}', 'match: {site_name: "a*"}'),
      'approval.rules[0].match.site_name',
      6,
      /not a supported field/,
    ],
    [
      'missing project',
      base().replace('  project: p', '  version: "2"'),
      'metadata.project',
      2,
      /is required/,
    ],
    ['missing approval', 'metadata:\n  project: p\n', 'approval', 1, /is required/],
    [
      'missing rule action',
      base().replace('      action: approve\n', ''),
      'approval.rules[0].action',
      5,
      /is required/,
    ],
    [
      'no rules',
      'metadata:\n  project: p\napproval:\n  rules: []\n',
      'approval.rules',
      4,
      /at least one rule/,
    ],
    ['bad validity', base('token:\n  validity: 7 days\n'), 'token.validity', 9, /duration like 7d/],
    ['too long validity', base('token:\n  validity: 400d\n'), 'token.validity', 9, /at most 366d/],
    ['zero max_uses', base('token:\n  max_uses: 0\n'), 'token.max_uses', 9, /at least 1/],
    ['fractional max_uses', base('token:\n  max_uses: 1.5\n'), 'token.max_uses', 9, /whole number/],
    ['string max_uses', base('token:\n  max_uses: "one"\n'), 'token.max_uses', 9, /must be a number/],
    [
      'unsupported method',
      base().replace('  rules:', '  method: manual\n  rules:'),
      'approval.method',
      4,
      /"manual" is not supported/,
    ],
    [
      'unknown role',
      base('user:\n  allowed_roles: [lead, project_admin]\n'),
      'user.allowed_roles[1]',
      9,
      /must be one of lead, member, org_admin/,
    ],
    [
      'default role not allowed',
      base('user:\n  allowed_roles: [member]\n  default_role: lead\n'),
      'user.default_role',
      10,
      /must be one of user.allowed_roles \(member\)/,
    ],
    [
      'duplicate role',
      base('user:\n  allowed_roles: [lead, lead]\n'),
      'user.allowed_roles[1]',
      9,
      /listed twice/,
    ],
    [
      'bad CIDR',
      base().replace('match: {}', 'match:\n        source_ips: ["10.0.0.0/33"]'),
      'approval.rules[0].match.source_ips[0]',
      7,
      /invalid prefix length/,
    ],
    [
      'not an address',
      base().replace('match: {}', 'match:\n        source_ips: ["intranet"]'),
      'approval.rules[0].match.source_ips[0]',
      7,
      /not an IPv4 or IPv6/,
    ],
    [
      'host bits set',
      base().replace('match: {}', 'match:\n        source_ips: ["10.1.0.0/8"]'),
      'approval.rules[0].match.source_ips[0]',
      7,
      /did you mean 10\.0\.0\.0\/8/,
    ],
    [
      'IPv6 host bits',
      base().replace('match: {}', 'match:\n        source_ips: ["2001:db8::1/32"]'),
      'approval.rules[0].match.source_ips[0]',
      7,
      /did you mean 2001:db8::\/32/,
    ],
    [
      'empty source_ips',
      base().replace('match: {}', 'match:\n        source_ips: []'),
      'approval.rules[0].match.source_ips',
      7,
      /at least one range/,
    ],
    [
      'bad action',
      base().replace('action: approve', 'action: allow'),
      'approval.rules[0].action',
      7,
      /must be one of approve, reject, pending/,
    ],
    [
      'duplicate rule names',
      base().replace(
        '      action: approve',
        '      action: approve\n    - name: r\n      match: {}\n      action: reject',
      ),
      'approval.rules[1].name',
      8,
      /already the name of rules\[0\]/,
    ],
    [
      'notifications on without channel',
      base('notifications:\n  enabled: true\n'),
      'notifications.enabled',
      9,
      /no channel is enabled/,
    ],
    [
      'notifications enabled not bool',
      base('notifications:\n  enabled: yes\n'),
      'notifications.enabled',
      9,
      /must be true or false/,
    ],
    [
      'webhook over http',
      base(
        'notifications:\n  enabled: true\n  channels:\n    webhook:\n      enabled: true\n      url: http://hooks.example.com/x\n',
      ),
      'notifications.channels.webhook.url',
      13,
      /https:\/\//,
    ],
    [
      'email recipient',
      base(
        'notifications:\n  enabled: true\n  channels:\n    email:\n      enabled: true\n      to: [not-an-address]\n',
      ),
      'notifications.channels.email.to[0]',
      13,
      /e-mail/,
    ],
    ['empty name pattern', base('site:\n  name_pattern: ""\n'), 'site.name_pattern', 9, /must not be empty/],
    ['section of the wrong type', base('token: 7d\n'), 'token', 8, /must be a mapping/],
  ])('%s', (_label, text, path, line, message) => {
    const found = issues(text);
    const hit = found.find((i) => i.path === path);
    expect(hit, JSON.stringify(found)).toBeDefined();
    expect(hit!.line).toBe(line);
    expect(hit!.message).toMatch(message);
  });

  it('reports every problem at once, in line order', () => {
    const found = issues(`metadata:
  project: p
  foo: 1
token:
  validity: soon
approval:
  rules:
    - name: r
      match: {}
      action: maybe
`);
    expect(found.map((i) => [i.path, i.line])).toEqual([
      ['metadata.foo', 3],
      ['token.validity', 5],
      ['approval.rules[0].action', 10],
    ]);
  });

  it('reports YAML syntax errors and duplicate keys with their line', () => {
    expect(errorMessage('metadata:\n  project: p\n  project: q\n')).toMatch(
      /metadata\.project \(line 3\): is given twice \(first on line 2\)/,
    );
    expect(errorMessage('metadata: [\n')).toMatch(/YAML syntax/);
    expect(errorMessage('- a\n- b\n')).toMatch(/must be a YAML mapping/);
    expect(errorMessage('')).toMatch(/must be a YAML mapping/);
  });

  it('accepts the notification shapes the service delivers to', () => {
    const { policy } = parsePolicy(
      base(
        'notifications:\n  enabled: true\n  channels:\n    email:\n      enabled: false\n    webhook:\n      enabled: true\n      url: https://hooks.example.com/pollen\n',
      ),
    );
    expect(notificationTargets(policy)).toEqual({
      webhook: { enabled: true, url: 'https://hooks.example.com/pollen' },
    });
  });
});

describe('durations, globs, CIDRs', () => {
  it('parses durations', () => {
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('12h')).toBe(43_200_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('45s')).toBe(45_000);
    expect(parseDuration('2w')).toBe(14 * 86_400_000);
    expect(parseDuration('1d12h')).toBe(36 * 3_600_000);
    for (const bad of ['', '7', 'd', '7 d', '-1d', '1.5h', '0d', '7y'])
      expect(() => parseDuration(bad), bad).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('matches globs: * any run, ? one char, anchored, the rest literal', () => {
    expect(matchNamePattern('*', '')).toBe(true);
    expect(matchNamePattern('*', 'anything')).toBe(true);
    expect(matchNamePattern('hospital-*', 'hospital-1')).toBe(true);
    expect(matchNamePattern('hospital-*', 'hospital-')).toBe(true);
    expect(matchNamePattern('hospital-*', 'xhospital-1')).toBe(false);
    expect(matchNamePattern('hospital-?', 'hospital-12')).toBe(false);
    expect(matchNamePattern('hospital-??', 'hospital-12')).toBe(true);
    expect(matchNamePattern('*-eu', 'site-eu')).toBe(true);
    expect(matchNamePattern('*-eu', 'site-eu-2')).toBe(false);
    expect(matchNamePattern('a*b*c', 'aXbYc')).toBe(true);
    expect(matchNamePattern('a*b*c', 'aXcYb')).toBe(false);
    // Everything else is literal: no regex or character classes.
    expect(matchNamePattern('site.1', 'siteX1')).toBe(false);
    expect(matchNamePattern('[ab]', 'a')).toBe(false);
    expect(matchNamePattern('[ab]', '[ab]')).toBe(true);
    expect(matchNamePattern('*@example.com', 'alice@example.com')).toBe(true);
    expect(matchNamePattern('*@example.com', 'alice@example.co')).toBe(false);
    // `?` is one character, also outside the BMP.
    expect(matchNamePattern('?', '😀')).toBe(true);
  });

  it('is fast on pathological patterns', () => {
    const t0 = performance.now();
    expect(matchNamePattern(`${'*a'.repeat(30)}*b`, 'a'.repeat(5000))).toBe(false);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('matches IPv4, IPv6 and IPv4-mapped IPv6 addresses', () => {
    const v4 = ['10.0.0.0/8', '172.16.0.0/12'];
    expect(ipInRanges('10.1.2.3', v4)).toBe(true);
    expect(ipInRanges('172.31.255.255', v4)).toBe(true);
    expect(ipInRanges('172.32.0.1', v4)).toBe(false);
    expect(ipInRanges('11.0.0.1', v4)).toBe(false);
    expect(ipInRanges('::ffff:10.1.2.3', v4)).toBe(true);
    expect(ipInRanges('::ffff:a01:203', v4)).toBe(true);
    expect(ipInRanges('::ffff:11.1.2.3', v4)).toBe(false);
    const v6 = ['2001:db8::/32', 'fd00::/8'];
    expect(ipInRanges('2001:db8:1::5', v6)).toBe(true);
    expect(ipInRanges('2001:db9::5', v6)).toBe(false);
    expect(ipInRanges('fd12:3456::1', v6)).toBe(true);
    expect(ipInRanges('10.1.2.3', v6)).toBe(false);
    expect(ipInRanges('fe80::1%eth0', ['fe80::/10'])).toBe(true);
    expect(ipInRanges('192.0.2.7', ['192.0.2.7'])).toBe(true);
    expect(ipInRanges('192.0.2.8', ['192.0.2.7'])).toBe(false);
    expect(ipInRanges('::ffff:192.0.2.7', ['::ffff:192.0.2.0/120'])).toBe(true);
    expect(ipInRanges('192.0.2.7', ['::ffff:192.0.2.0/120'])).toBe(true);
    expect(ipInRanges('anything', ['0.0.0.0/0'])).toBe(false);
    expect(ipInRanges('8.8.8.8', ['0.0.0.0/0'])).toBe(true);
    expect(ipInRanges('::1', ['::/0'])).toBe(true);
  });

  it('validates CIDRs', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ family: 4, network: 0x0a000000n, prefix: 8 });
    expect(typeof parseCidr('10.0.0.0/8/1')).toBe('string');
    expect(typeof parseCidr('10.0.0.256/32')).toBe('string');
    expect(typeof parseCidr('::/129')).toBe('string');
    expect(typeof parseCidr('10.0.0.0/-1')).toBe('string');
    expect(typeof parseCidr('::ffff:0.0.0.0/90')).toBe('string');
  });
});

describe('decisions', () => {
  const custom = parsePolicy(CUSTOM).policy;

  it('first matching rule wins', () => {
    expect(decide(custom, { name: 'hospital-1', type: 'client', ip: '10.1.2.3' })).toEqual({
      action: 'approve',
      rule: 'internal-auto-approve',
      reason: expect.stringContaining('10.0.0.0/8'),
    });
    expect(decide(custom, { name: 'hospital-1', type: 'client', ip: '8.8.8.8' })).toMatchObject({
      action: 'pending',
      rule: 'external-pending',
    });
    expect(decide(custom, { name: 'hospital-1', type: 'client', ip: '::ffff:172.16.0.9' })).toMatchObject({
      action: 'approve',
    });
  });

  it('a rule reached later does not override an earlier match', () => {
    const p = parsePolicy(`metadata: {project: p}
approval:
  rules:
    - {name: deny-bad, match: {site_name_pattern: "bad-*"}, action: reject}
    - {name: all, match: {}, action: approve}
`).policy;
    expect(decide(p, { name: 'bad-1', type: 'client', ip: '10.0.0.1' })).toMatchObject({
      action: 'reject',
      rule: 'deny-bad',
    });
    expect(decide(p, { name: 'good-1', type: 'client', ip: '10.0.0.1' })).toMatchObject({
      action: 'approve',
      rule: 'all',
    });
  });

  it('no matching rule → reject', () => {
    const p = parsePolicy(`metadata: {project: p}
approval:
  rules:
    - {name: lan, match: {source_ips: ["192.168.0.0/16"]}, action: approve}
`).policy;
    expect(decide(p, { name: 'x', type: 'client', ip: '10.0.0.1' })).toEqual({
      action: 'reject',
      reason: 'no rule matched',
    });
    // An unknown or unparseable address never matches a rule with source_ips.
    expect(decide(p, { name: 'x', type: 'client' })).toEqual({ action: 'reject', reason: 'no rule matched' });
    expect(decide(p, { name: 'x', type: 'client', ip: 'garbage' })).toEqual({
      action: 'reject',
      reason: 'no rule matched',
    });
  });

  it('a site whose name fails site.name_pattern is rejected; users skip that check', () => {
    const d = decide(custom, { name: 'clinic-1', type: 'client', ip: '10.1.2.3' });
    expect(d).toEqual({
      action: 'reject',
      reason: 'site name "clinic-1" does not match site.name_pattern "hospital-*"',
    });
    expect(decide(custom, { name: 'relay-1', type: 'relay', ip: '10.1.2.3' }).action).toBe('reject');
    // A user is not a site: the name pattern does not apply, the rules do.
    expect(decide(custom, { name: 'alice@example.com', type: 'user', ip: '10.1.2.3' })).toMatchObject({
      action: 'pending',
      rule: 'external-pending',
    });
  });

  it('explain traces each evaluated rule', () => {
    const ex = explain(custom, { name: 'hospital-1', type: 'client', ip: '8.8.8.8' });
    expect(ex.siteNameCheck).toEqual({ applies: true, pattern: 'hospital-*', matched: true });
    expect(ex.rules).toEqual([
      {
        rule: 'internal-auto-approve',
        index: 0,
        matched: false,
        action: 'approve',
        reason: 'name "hospital-1" matches "hospital-*"; IP 8.8.8.8 is not in 10.0.0.0/8, 172.16.0.0/12',
      },
      {
        rule: 'external-pending',
        index: 1,
        matched: true,
        action: 'pending',
        reason: 'name "hospital-1" matches "*"; any IP',
      },
    ]);
  });
});

describe('site.host_patterns', () => {
  const withHosts = (patterns: string) =>
    `metadata: { project: p }\nsite: { host_patterns: ${patterns} }\napproval: { rules: [{ name: all, match: {}, action: approve }] }\n`;

  it('allows any host by default, and only matching DNS names and addresses when set', () => {
    const open = parsePolicy(withHosts('["*"]')).policy;
    expect(parsePolicy(DEFAULT_POLICY_YAML).policy.site.host_patterns).toEqual(['*']);
    expect(hostAllowed(open, 'anything.example') && hostAllowed(open, '192.0.2.1')).toBe(true);
    const p = parsePolicy(withHosts('["*.Example.com", "localhost", "10.0.0.0/8", "2001:db8::/32"]')).policy;
    expect(
      ['a.example.com', 'A.EXAMPLE.COM', 'localhost', '10.1.2.3', '2001:db8::5'].map((h) =>
        hostAllowed(p, h),
      ),
    ).toEqual([true, true, true, true, true]);
    expect(
      ['example.com', 'evil.test', '11.0.0.1', '127.0.0.1', '2001:db9::1'].some((h) => hostAllowed(p, h)),
    ).toBe(false);
  });

  it('explains a refused host as the reason of a reject, before any rule', () => {
    const p = parsePolicy(withHosts('["*.example.com"]')).policy;
    const ex = explain(p, {
      name: 'link',
      type: 'server',
      ip: '10.0.0.1',
      hosts: ['link.example.com', 'evil.test'],
    });
    expect(ex.hostCheck.refused).toEqual(['evil.test']);
    expect(ex.decision).toEqual({
      action: 'reject',
      reason: 'host "evil.test" is not allowed by site.host_patterns (*.example.com)',
    });
    expect(ex.rules).toEqual([]);
  });

  it('refuses a pattern that is neither a DNS glob nor an IP range, naming the line', () => {
    expect(issues(withHosts('["10.0.0.1/8", "bad host"]'))).toEqual([
      expect.objectContaining({
        path: 'site.host_patterns[0]',
        message: expect.stringContaining('host bits set'),
      }),
      expect.objectContaining({
        path: 'site.host_patterns[1]',
        message: expect.stringContaining('neither a DNS name pattern'),
      }),
    ]);
  });
});
