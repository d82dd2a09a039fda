/**
 * What policy rules match on, in the policy's own syntax: durations (`7d`, `1d12h`), name globs
 * (`hospital-*`) and IP addresses against CIDR ranges (IPv4 and IPv6).
 */
import { isIP } from 'node:net';
import { PollenError } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// Durations

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^(?:\d+[smhdw])+$/;
export const MAX_VALIDITY_MS = 366 * UNIT_MS['d']!;

export function durationMs(text: string): number | undefined {
  const t = text.trim();
  if (!DURATION.test(t)) return undefined;
  let total = 0;
  for (const m of t.matchAll(/(\d+)([smhdw])/g)) total += Number(m[1]) * UNIT_MS[m[2]!]!;
  return Number.isSafeInteger(total) ? total : undefined;
}

/** `7d` → 604800000. Units: s, m, h, d, w; they may be combined (`1d12h`). */
export function parseDuration(text: string): number {
  const ms = durationMs(text);
  if (ms === undefined || ms <= 0)
    throw new PollenError('INVALID_ARGUMENT', `Not a duration: "${text}" (use e.g. 7d, 12h, 30m, 1d12h)`);
  return ms;
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
