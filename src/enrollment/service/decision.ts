import type { Kysely, Transaction } from 'kysely';
import { isPollenError, PollenError } from '../../errors.js';
import type { EnrollmentSchema } from './schema.js';

type Db = Kysely<EnrollmentSchema> | Transaction<EnrollmentSchema>;

/** The decision that holds for a request, as an admin who lost a race is told it. */
export interface HeldDecision {
  requestId: string;
  name: string;
  type: string;
  decision: 'approved' | 'rejected';
  decidedBy: string | null;
  decidedAt: string | null;
}

/**
 * Take the decision on one pending request. The guarded update's row count decides: of two
 * admins (or replicas, or workers) deciding one request at once, exactly one updates the row and
 * the other is told which decision holds, so each request gets one decision and one audit entry.
 */
export async function claimDecision(
  tx: Transaction<EnrollmentSchema>,
  requestId: string,
  set: { status: 'approved' | 'rejected'; decided_at: number; decided_by: string } & Partial<{
    serial: string;
    reason: string;
  }>,
): Promise<void> {
  const updated = await tx
    .updateTable('requests')
    .set(set)
    .where('id', '=', requestId)
    .where('status', '=', 'pending')
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) === 1) return;
  // On PostgreSQL the losing update waited for the winner's commit; this read sees it.
  const held = await heldDecision(tx, requestId);
  if (!held) throw new PollenError('REQUEST_NOT_FOUND', `No request ${requestId}`);
  throw alreadyDecided([held]);
}

/** The latest decided request with this id or name, if there is one. */
export async function heldDecision(db: Db, idOrName: string): Promise<HeldDecision | undefined> {
  const row = await db
    .selectFrom('requests')
    .select(['id', 'name', 'type', 'status', 'decided_by', 'decided_at'])
    .where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]))
    .where('status', '!=', 'pending')
    .orderBy('decided_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!row || row.status === 'pending') return undefined;
  return {
    requestId: row.id,
    name: row.name,
    type: row.type,
    decision: row.status,
    decidedBy: row.decided_by,
    decidedAt: row.decided_at === null ? null : new Date(Number(row.decided_at)).toISOString(),
  };
}

export function isAlreadyDecided(e: unknown): e is PollenError {
  return isPollenError(e) && e.code === 'REQUEST_ALREADY_DECIDED';
}

/** REQUEST_ALREADY_DECIDED naming the decision that holds (the first, when several were lost). */
export function alreadyDecided(held: HeldDecision[]): PollenError {
  const first = held[0]!;
  const who = first.decidedBy ? ` by ${first.decidedBy}` : '';
  const when = first.decidedAt ? ` at ${first.decidedAt}` : '';
  const message =
    held.length === 1
      ? `Request ${first.requestId} for '${first.name}' was already ${first.decision}${who}${when}`
      : `All ${held.length} selected requests were already decided (${first.requestId} for '${first.name}' was ${first.decision}${who}${when})`;
  return new PollenError('REQUEST_ALREADY_DECIDED', message, {
    data: held.length === 1 ? { ...first } : { ...first, alreadyDecided: held },
  });
}
