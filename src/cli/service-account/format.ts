/** Service accounts as the CLI shows them (text and --json). */
import { dim } from '../output.js';

/** A time from either service: epoch ms, with 0 (the Control API) or null (the Certificate Service) for none. */
type Time = bigint | number | null;

/** An account as the SuperLink's Control API or the Certificate Service's admin API sends it. */
interface WireAccount {
  name: string;
  roles: string[];
  org: string | null;
  expiresAt: Time;
  createdBy: string;
  createdAt: Time;
  revokedAt: Time;
  lastUsedAt: Time;
}

const iso = (ms: Time) => (ms ? new Date(Number(ms)).toISOString() : null);

/** An account as `--json` prints it; `status` as of `now`. */
export function accountJson(a: WireAccount, now: number) {
  const status = a.revokedAt ? 'revoked' : a.expiresAt && Number(a.expiresAt) <= now ? 'expired' : 'active';
  return {
    name: a.name,
    roles: a.roles,
    org: a.org || null,
    status,
    expiresAt: iso(a.expiresAt),
    createdBy: a.createdBy,
    createdAt: iso(a.createdAt),
    revokedAt: iso(a.revokedAt),
    lastUsedAt: iso(a.lastUsedAt),
  };
}
export type AccountJson = ReturnType<typeof accountJson>;

/** One line: name, roles, organisation, status and times. */
export function accountLine(a: AccountJson): string {
  const when =
    a.status === 'revoked'
      ? `revoked ${a.revokedAt}`
      : a.status === 'expired'
        ? `expired ${a.expiresAt}`
        : a.expiresAt
          ? `expires ${a.expiresAt}`
          : 'never expires';
  return [
    a.name,
    a.roles.join(','),
    a.org ? `org ${a.org}` : dim('(no organisation)'),
    a.status === 'active' ? when : dim(when),
    dim(a.lastUsedAt ? `last used ${a.lastUsedAt}` : 'never used'),
  ].join('  ');
}
