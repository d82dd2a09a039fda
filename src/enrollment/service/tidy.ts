import type { Database } from '../../store/database.js';
import { DAY } from './context.js';
import type { EnrollmentSchema } from './schema.js';

export interface TidyResult {
  tokens: number;
  requests: number;
  certificates: number;
}

/**
 * Keep storage bounded: forget token uses a day after the token expired (it can no longer be
 * replayed), and decided requests and certificates that ended more than `retainMs` ago.
 * Pending requests are never removed.
 */
export async function tidy(
  store: Database<EnrollmentSchema>,
  now: Date,
  retainMs = 30 * DAY,
): Promise<TidyResult> {
  const t = now.getTime();
  const db = store.db;
  const tokens = await db
    .deleteFrom('token_uses')
    .where('expires_at', '<', t - DAY)
    .executeTakeFirst();
  const requests = await db
    .deleteFrom('requests')
    .where('status', '!=', 'pending')
    .where('decided_at', '<', t - retainMs)
    .executeTakeFirst();
  const certificates = await db
    .deleteFrom('certificates')
    .where('not_after', '<', t - retainMs)
    .executeTakeFirst();
  return {
    tokens: Number(tokens.numDeletedRows),
    requests: Number(requests.numDeletedRows),
    certificates: Number(certificates.numDeletedRows),
  };
}
