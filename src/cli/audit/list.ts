import type { ListedEntry } from '../../audit/entry.js';
import { PollenError } from '../../errors.js';
import { dim, type Output } from '../output.js';
import { type AuditSourceOptions, withAuditSource } from './source.js';

export interface AuditListOptions extends AuditSourceOptions {
  /** A time (ISO 8601) or a duration back from now (30m, 12h, 7d). */
  since?: string;
  actor?: string;
  federation?: string;
  /** As typed (checked here). */
  limit: string;
}

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `--since`: a time, or a duration back from `now`. */
export function sinceTime(s: string, now = Date.now()): Date {
  const m = /^(\d+)([smhdw])$/.exec(s.trim());
  const t = m ? new Date(now - Number(m[1]) * UNITS[m[2]!]!) : new Date(s);
  if (Number.isNaN(t.getTime()))
    throw new PollenError('USAGE', `--since takes a time or a duration, not "${s}"`, {
      hint: 'For example --since 2026-12-01T00:00:00Z or --since 24h.',
    });
  return t;
}

/** One entry as a line: seq, time, outcome, action and target, who from where. */
export function entryLine(e: ListedEntry): string {
  if ('redacted' in e) return `${String(e.seq).padStart(6)}  ${dim('(another organisation’s entry)')}`;
  const who = [e.actorName ?? e.actor, e.actorOrg && `(${e.actorOrg})`, e.auth && dim(`[${e.auth}]`)]
    .filter(Boolean)
    .join(' ');
  const where = e.address ? dim(` from ${e.address}`) : '';
  const fed = e.federation ? dim(` in ${e.federation}`) : '';
  const count = typeof e.detail.repeated === 'number' ? dim(` ×${e.detail.repeated} more`) : '';
  const reason = typeof e.detail.reason === 'string' ? `  reason: ${e.detail.reason}` : '';
  return `${String(e.seq).padStart(6)}  ${e.at}  ${(e.outcome ?? 'ok').padEnd(8)} ${e.action} ${e.target}${fed}  by ${who}${where}${count}${reason}`;
}

/** `pollen audit list`: entries of a SuperLink's or a Certificate Service's audit trail. */
export async function auditList(f: AuditListOptions, out: Output): Promise<void> {
  const limit = Number(f.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
    throw new PollenError('USAGE', '--limit takes a number from 1 to 10000');
  const since = f.since === undefined ? undefined : sinceTime(f.since);
  const result = await withAuditSource(f, async (s) => ({
    source: s.name,
    entries: await s.entries({
      limit,
      ...(since && { since }),
      ...(f.actor && { actor: f.actor }),
      ...(f.federation && { federation: f.federation }),
    }),
  }));
  out.result(result, (d) =>
    d.entries.length === 0 ? [dim(`no audit entries on ${d.source} match`)] : d.entries.map(entryLine),
  );
}
