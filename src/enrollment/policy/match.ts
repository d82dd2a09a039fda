/**
 * Matching an enrollment request against a policy: name globs, source IP ranges, and the
 * decision (first matching rule wins) with its explanation (`pollen policy explain`).
 */
import { isIP } from 'node:net';
import type { Policy, PolicyRule, RuleAction, SubjectType } from '../policy.js';

/** Sites are client, server and relay; `user` is a person (no site name pattern applies). */
export function isSiteType(type: SubjectType): boolean {
  return type !== 'user';
}

// ---------------------------------------------------------------------------------------------
// Name globs

/**
 * Glob match, anchored at both ends: `*` matches any run of characters (also none), `?` exactly
 * one character, everything else itself. Linear-time (no regular expression, no backtracking
 * blow-up on patterns like `*a*a*a*b`).
 */
export function matchNamePattern(pattern: string, name: string): boolean {
  const p = [...pattern];
  const s = [...name];
  let pi = 0;
  let si = 0;
  let star = -1;
  let mark = 0;
  while (si < s.length) {
    if (pi < p.length && (p[pi] === '?' || (p[pi] !== '*' && p[pi] === s[si]))) {
      pi++;
      si++;
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++;
      mark = si;
    } else if (star >= 0) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}

// ---------------------------------------------------------------------------------------------
// IP addresses and CIDR ranges

interface IpValue {
  family: 4 | 6;
  value: bigint;
}

function ipv4ToBigInt(s: string): bigint {
  return s.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

/** Parse an IPv4 or IPv6 address; IPv4-mapped IPv6 (`::ffff:10.1.2.3`) becomes IPv4. */
export function parseIp(text: string): IpValue | undefined {
  const s = text.trim().replace(/%.*$/, '');
  const fam = isIP(s);
  if (fam === 4) return { family: 4, value: ipv4ToBigInt(s) };
  if (fam !== 6) return undefined;
  let groups: string[];
  let rest = s;
  let tail4: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (rest.slice(lastColon + 1).includes('.')) {
    tail4 = rest.slice(lastColon + 1);
    rest = `${rest.slice(0, lastColon + 1)}0:0`;
  }
  if (rest.includes('::')) {
    const [head, tail] = rest.split('::') as [string, string];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  } else {
    groups = rest.split(':');
  }
  let value = groups.reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g, 16)), 0n);
  if (tail4 !== undefined) value = (value & ~0xffffffffn) | ipv4ToBigInt(tail4);
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
  return { family: 6, value };
}

interface Cidr {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

/** Parse `10.0.0.0/8`, `2001:db8::/32` or a bare address (a /32 or /128); error text if invalid. */
export function parseCidr(text: string): Cidr | string {
  const [addr = '', prefixText, extra] = text.trim().split('/');
  if (extra !== undefined) return `"${text}" is not a CIDR range`;
  const plainFamily = isIP(addr.replace(/%.*$/, ''));
  const ip = parseIp(addr);
  if (!ip || plainFamily === 0) return `"${text}" is not an IPv4 or IPv6 address or CIDR range`;
  const written = plainFamily === 4 ? 32 : 128;
  let prefix = written;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > written)
      return `"${text}" has an invalid prefix length (0-${written})`;
    prefix = Number(prefixText);
  }
  // An IPv4-mapped IPv6 range (::ffff:10.0.0.0/104) is the IPv4 range 10.0.0.0/8.
  if (plainFamily === 6 && ip.family === 4) {
    if (prefix < 96) return `"${text}" spans more than the IPv4-mapped range ::ffff:0:0/96`;
    prefix -= 96;
  }
  const bits = ip.family === 4 ? 32 : 128;
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((ip.value & hostMask) !== 0n) {
    const network = ip.value & ~hostMask;
    return `"${text}" has host bits set; did you mean ${formatIp({ family: ip.family, value: network })}/${prefix}?`;
  }
  return { family: ip.family, network: ip.value, prefix };
}

function formatIp(ip: IpValue): string {
  if (ip.family === 4) return [24n, 16n, 8n, 0n].map((s) => String((ip.value >> s) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((ip.value >> BigInt(i * 16)) & 0xffffn).toString(16));
  // RFC 5952: compress the longest run (2 or more) of zero groups, the first one on a tie.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

function cidrContains(cidr: Cidr, ip: IpValue): boolean {
  if (cidr.family !== ip.family) return false;
  const bits = cidr.family === 4 ? 32 : 128;
  const shift = BigInt(bits - cidr.prefix);
  return ip.value >> shift === cidr.network >> shift;
}

/** True when `ip` lies in any of the CIDR ranges (IPv4-mapped IPv6 matches IPv4 ranges). */
export function ipInRanges(ip: string, ranges: readonly string[]): boolean {
  const addr = parseIp(ip);
  if (!addr) return false;
  return ranges.some((r) => {
    const c = parseCidr(r);
    return typeof c !== 'string' && cidrContains(c, addr);
  });
}

// ---------------------------------------------------------------------------------------------
// Decisions

export interface EnrollmentRequestFacts {
  /** The subject name (site name or user e-mail). */
  name: string;
  type: SubjectType;
  /** The requester's address as the service sees it; undefined = unknown. */
  ip?: string | undefined;
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

/** Decide like `decide`, and say why for each rule that was evaluated. */
export function explain(policy: Policy, req: EnrollmentRequestFacts): Explanation {
  const pattern = policy.site.name_pattern;
  const applies = isSiteType(req.type);
  const nameOk = !applies || matchNamePattern(pattern, req.name);
  const siteNameCheck = { applies, pattern, matched: nameOk };
  if (!nameOk)
    return {
      decision: {
        action: 'reject',
        reason: `site name "${req.name}" does not match site.name_pattern "${pattern}"`,
      },
      siteNameCheck,
      rules: [],
    };
  const rules: RuleTrace[] = [];
  for (const [i, rule] of policy.approval.rules.entries()) {
    const t = traceRule(rule, i, req);
    rules.push(t);
    if (t.matched)
      return { decision: { action: rule.action, rule: rule.name, reason: t.reason }, siteNameCheck, rules };
  }
  return { decision: { action: 'reject', reason: 'no rule matched' }, siteNameCheck, rules };
}

/** First matching rule wins; no match → reject ('no rule matched'). */
export function decide(policy: Policy, req: EnrollmentRequestFacts): Decision {
  return explain(policy, req).decision;
}
