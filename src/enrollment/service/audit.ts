import { createHash } from 'node:crypto';

/** One audit entry as stored and as the API returns it. */
export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  subject: string;
  detail: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

/** The hash before the first entry. */
export const AUDIT_GENESIS = '0'.repeat(64);

/** sha256(prevHash, newline, the entry's fields as a JSON array): each entry seals all before it. */
export function auditHash(prevHash: string, e: Omit<AuditEntry, 'prevHash' | 'hash'>): string {
  return createHash('sha256')
    .update(`${prevHash}\n${JSON.stringify([e.seq, e.at, e.actor, e.action, e.subject, e.detail])}`)
    .digest('hex');
}

export interface AuditCheck {
  ok: boolean;
  count: number;
  head: { seq: number; hash: string } | null;
  /** The first entry that does not follow from the ones before it. */
  brokenAt?: number;
}

/**
 * Check that `entries` (in order) form an unbroken chain starting after `from` (the genesis, or a
 * head recorded earlier): a changed, removed or inserted entry breaks every hash after it.
 */
export function verifyAuditChain(entries: AuditEntry[], from = { seq: 0, hash: AUDIT_GENESIS }): AuditCheck {
  let prev = from;
  for (const e of entries) {
    if (e.seq !== prev.seq + 1 || e.prevHash !== prev.hash || auditHash(prev.hash, e) !== e.hash)
      return { ok: false, count: entries.length, head: prev.seq ? prev : null, brokenAt: e.seq };
    prev = { seq: e.seq, hash: e.hash };
  }
  return { ok: true, count: entries.length, head: prev.seq ? prev : null };
}
