import { type AuditEntry, verifyAuditChain } from '../../enrollment/service/audit.js';
import { PollenError } from '../../errors.js';
import { dim, type Output } from '../output.js';
import { type ServiceOptions, withClient } from './admin-client.js';

export interface EnrollmentAuditOptions extends ServiceOptions {
  /** Only entries after this sequence number (as typed: checked here). */
  after: string;
  /** Fetch the whole log and check every hash. */
  verify?: boolean;
  /** SEQ:HASH of an earlier head that must still be part of the chain. */
  expectHead?: string;
}

/** `pollen enrollment audit`: the service's hash-chained audit log, and a check of the chain. */
export async function enrollmentAudit(f: EnrollmentAuditOptions, out: Output): Promise<void> {
  const after = f.verify || f.expectHead ? 0 : Number(f.after);
  if (!Number.isInteger(after) || after < 0)
    throw new PollenError('USAGE', '--after takes a sequence number');
  const entries: AuditEntry[] = await withClient(f, async (c) => {
    const all: AuditEntry[] = [];
    // bounded: at most 1,000 pages of 1,000 entries
    for (let page = 0; page < 1000; page++) {
      const batch = await c.audit(all.at(-1)?.seq ?? after, 1000);
      all.push(...(batch as AuditEntry[]));
      if (batch.length < 1000 || !(f.verify || f.expectHead)) break;
    }
    return all;
  });
  const check = f.verify || f.expectHead ? verifyAuditChain(entries) : undefined;
  if (check && !check.ok)
    throw new PollenError('AUDIT_BROKEN', `The audit chain is broken at entry ${check.brokenAt}`);
  if (f.expectHead) {
    const [seq, hash] = f.expectHead.split(':');
    const e = entries.find((x) => x.seq === Number(seq));
    if (!e || e.hash !== hash)
      throw new PollenError('AUDIT_BROKEN', `Entry ${seq} no longer has the hash recorded earlier`);
  }
  out.result({ entries, ...(check ? { verified: check.ok, head: check.head } : {}) }, (d) => [
    ...d.entries.map(
      (e) =>
        `${String(e.seq).padStart(6)}  ${e.at}  ${e.action.padEnd(20)} ${e.subject}  ${dim(`by ${e.actor}`)}${typeof e.detail['reason'] === 'string' ? `  reason: ${e.detail['reason']}` : ''}`,
    ),
    ...(check
      ? [
          '',
          `chain verified: ${check.count} entries, head ${check.head ? `${check.head.seq}:${check.head.hash}` : '(empty)'}`,
        ]
      : []),
  ]);
}
