/** Service accounts as the CLI shows them (text and --json). */
import type { ServiceAccount } from '../../gen/pollen/v1/control_pb.js';
import { dim } from '../output.js';

const iso = (ms: bigint) => (ms ? new Date(Number(ms)).toISOString() : null);

/** An account as `--json` prints it; `status` as of `now`. */
export function accountJson(a: ServiceAccount, now: number) {
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
