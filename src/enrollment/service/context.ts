import type { Transaction } from 'kysely';
import type { AuditTrail } from '../../audit/trail.js';
import type { LoadedCa } from '../../pki/ca.js';
import type { WriteBatcher } from '../../store/batcher.js';
import type { Database } from '../../store/database.js';
import type { Policies } from './policies.js';
import type { EnrollmentSchema } from './schema.js';

export type Tx = Transaction<EnrollmentSchema>;

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

/**
 * Refuses (throws) a change to what belongs to organisation `org` (undefined: none) when the
 * caller may not decide there. Checked for every selected item before anything is changed.
 */
export type OrgGuard = (org: string | undefined) => void;

/** Milliseconds since the epoch as ISO 8601, null kept. */
export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/**
 * What the parts of the Certificate Service share: the CA, the store and its group-commit
 * batcher, the audit trail, the policies it honours and one clock.
 */
export interface ServiceContext {
  ca: LoadedCa;
  store: Database<EnrollmentSchema>;
  batcher: WriteBatcher<EnrollmentSchema>;
  audit: AuditTrail;
  policies: Policies;
  now: () => Date;
}
