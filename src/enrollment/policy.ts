/**
 * The enrollment policy: a YAML file (the same shape as NVIDIA FLARE's) that says how long tokens
 * live, which site names and user roles may enroll, and which enrollment requests are approved,
 * rejected or held for a human. Parsing keeps line numbers so every error names the field and the
 * line; every documented field is enforced or refused, never silently ignored.
 *
 * This module holds the policy's shape and its decisions (`decide`, `explain`); reading and
 * checking a policy file is policy-load.ts, the matching of names, addresses and durations
 * policy-match.ts.
 */
import { ipInRanges, matchNamePattern, parseCidr, parseIp } from './policy-match.js';

/** The roles a user token may carry (FLARE's project roles; `project_admin` is never enrolled). */
export const USER_ROLES = ['lead', 'member', 'org_admin'] as const;
export type UserRole = (typeof USER_ROLES)[number];

/** What a rule decides for an enrollment request. */
export const RULE_ACTIONS = ['approve', 'reject', 'pending'] as const;
export type RuleAction = (typeof RULE_ACTIONS)[number];

/** The identities a token can enroll. Sites are client, server and relay; `user` is a person. */
export const SUBJECT_TYPES = ['client', 'server', 'relay', 'user'] as const;
export type SubjectType = (typeof SUBJECT_TYPES)[number];

export function isSiteType(type: SubjectType): boolean {
  return type !== 'user';
}

/** The built-in policy, used when neither `-p` nor POLLEN_ENROLLMENT_POLICY names a file. */
export const DEFAULT_POLICY_YAML = `metadata:
  project: "pollen-default"
  description: "Built-in default policy for quick start"
  version: "1.0"

token:
  validity: 7d
  max_uses: 1

site:
  name_pattern: "*"

user:
  allowed_roles:
    - lead
    - member
    - org_admin
  default_role: lead

approval:
  method: policy
  rules:
    - name: "auto-approve-all"
      description: "Auto-approve all enrollment requests"
      match: {}
      action: approve

notifications:
  enabled: false
`;

export interface PolicyRule {
  name: string;
  description?: string;
  match: {
    /** Glob on the subject name (`*`, `?`); absent = any name. */
    site_name_pattern?: string;
    /** CIDR ranges (IPv4 or IPv6) of the requester's address; absent = any address. */
    source_ips?: string[];
  };
  action: RuleAction;
}

export interface EmailChannel {
  enabled: boolean;
  /** Recipients; empty = the service's configured admin address. */
  to: string[];
}

export interface WebhookChannel {
  enabled: boolean;
  url: string;
}

/** Who hears about pending / approved / rejected requests. Delivery is done by the service. */
export interface PolicyNotifications {
  enabled: boolean;
  channels: {
    email?: EmailChannel;
    webhook?: WebhookChannel;
  };
}

export interface Policy {
  metadata: { project: string; description?: string; version: string };
  token: {
    /** As written, e.g. `7d`, `12h`, `30m`, `1d12h`. */
    validity: string;
    /** The validity in milliseconds (derived from `validity`). */
    validity_ms: number;
    /** How many enrollments one token allows. */
    max_uses: number;
  };
  site: {
    name_pattern: string;
    /**
     * What a server or relay certificate may name (`--host`): DNS globs (`*.example.com`) and IP
     * ranges (`10.0.0.0/8`); `*` allows any name or address (the default).
     */
    host_patterns: string[];
  };
  user: { allowed_roles: UserRole[]; default_role: UserRole };
  /**
   * The organisations tokens may name (`token generate --org`); when listed, every token must
   * name one of them. Absent: any organisation, or none.
   */
  orgs?: string[];
  approval: { method: 'policy'; rules: PolicyRule[] };
  notifications: PolicyNotifications;
}

export interface LoadedPolicy {
  policy: Policy;
  /** Lowercase hex SHA-256 of the exact file bytes. */
  sha256: string;
  /** The file path, or 'built-in'. */
  source: string;
  text: string;
}

/** The enabled notification channels, ready for the service to deliver to. */
export function notificationTargets(policy: Policy): { email?: EmailChannel; webhook?: WebhookChannel } {
  const n = policy.notifications;
  if (!n.enabled) return {};
  return {
    ...(n.channels.email?.enabled && { email: n.channels.email }),
    ...(n.channels.webhook?.enabled && { webhook: n.channels.webhook }),
  };
}

// ---------------------------------------------------------------------------------------------
// Decisions

export interface EnrollmentRequestFacts {
  /** The subject name (site name or user e-mail). */
  name: string;
  type: SubjectType;
  /** The requester's address as the service sees it; undefined = unknown. */
  ip?: string | undefined;
  /** Servers and relays: the DNS names and addresses the certificate would name (`--host`). */
  hosts?: readonly string[] | undefined;
}

export interface Decision {
  action: RuleAction;
  /** The rule that decided; absent when no rule matched or the site name was refused. */
  rule?: string;
  reason: string;
}

export interface RuleTrace {
  rule: string;
  index: number;
  matched: boolean;
  /** Why it matched or not, in words. */
  reason: string;
  action: RuleAction;
}

export interface Explanation {
  decision: Decision;
  /** The site.name_pattern check (sites only; users skip it). */
  siteNameCheck: { applies: boolean; pattern: string; matched: boolean };
  /** The site.host_patterns check of the hosts asked for (none asked: nothing refused). */
  hostCheck: { patterns: string[]; hosts: string[]; refused: string[] };
  /** Every rule evaluated, in order, up to and including the one that matched. */
  rules: RuleTrace[];
}

function traceRule(rule: PolicyRule, index: number, req: EnrollmentRequestFacts): RuleTrace {
  const why: string[] = [];
  const { site_name_pattern: pattern, source_ips: ranges } = rule.match;
  let matched = true;
  if (pattern !== undefined) {
    if (matchNamePattern(pattern, req.name)) why.push(`name "${req.name}" matches "${pattern}"`);
    else {
      matched = false;
      why.push(`name "${req.name}" does not match "${pattern}"`);
    }
  } else why.push('any name');
  if (ranges !== undefined) {
    if (req.ip === undefined || req.ip === '') {
      matched = false;
      why.push('no source IP is known and the rule needs one');
    } else if (!parseIp(req.ip)) {
      matched = false;
      why.push(`source IP "${req.ip}" is not a valid address`);
    } else if (ipInRanges(req.ip, ranges)) why.push(`IP ${req.ip} is in ${ranges.join(', ')}`);
    else {
      matched = false;
      why.push(`IP ${req.ip} is not in ${ranges.join(', ')}`);
    }
  } else why.push('any IP');
  return { rule: rule.name, index, matched, reason: why.join('; '), action: rule.action };
}

/** Whether site.host_patterns lets a certificate name `host` (a DNS name or an IP address). */
export function hostAllowed(policy: Policy, host: string): boolean {
  const ip = parseIp(host) !== undefined;
  return policy.site.host_patterns.some((p) => {
    if (p === '*') return true;
    const range = typeof parseCidr(p) !== 'string';
    return ip
      ? range && ipInRanges(host, [p])
      : !range && matchNamePattern(p.toLowerCase(), host.toLowerCase());
  });
}

/** Decide like `decide`, and say why for each rule that was evaluated. */
export function explain(policy: Policy, req: EnrollmentRequestFacts): Explanation {
  const pattern = policy.site.name_pattern;
  const applies = isSiteType(req.type);
  const nameOk = !applies || matchNamePattern(pattern, req.name);
  const siteNameCheck = { applies, pattern, matched: nameOk };
  const hosts = [...(req.hosts ?? [])];
  const hostCheck = {
    patterns: policy.site.host_patterns,
    hosts,
    refused: hosts.filter((h) => !hostAllowed(policy, h)),
  };
  const refuse = (reason: string): Explanation => ({
    decision: { action: 'reject', reason },
    siteNameCheck,
    hostCheck,
    rules: [],
  });
  if (!nameOk) return refuse(`site name "${req.name}" does not match site.name_pattern "${pattern}"`);
  if (hostCheck.refused.length > 0)
    return refuse(
      `host ${hostCheck.refused.map((h) => `"${h}"`).join(', ')} is not allowed by site.host_patterns (${hostCheck.patterns.join(', ')})`,
    );
  const rules: RuleTrace[] = [];
  for (const [i, rule] of policy.approval.rules.entries()) {
    const t = traceRule(rule, i, req);
    rules.push(t);
    if (t.matched)
      return {
        decision: { action: rule.action, rule: rule.name, reason: t.reason },
        siteNameCheck,
        hostCheck,
        rules,
      };
  }
  return { decision: { action: 'reject', reason: 'no rule matched' }, siteNameCheck, hostCheck, rules };
}

/** First matching rule wins; no match → reject ('no rule matched'). */
export function decide(policy: Policy, req: EnrollmentRequestFacts): Decision {
  return explain(policy, req).decision;
}
