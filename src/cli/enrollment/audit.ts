import { PollenError } from '../../errors.js';
import { auditList } from '../audit/list.js';
import { readAll, withAuditSource } from '../audit/source.js';
import { auditVerify } from '../audit/verify.js';
import type { Output } from '../output.js';
import type { ServiceOptions } from './admin-client.js';

export interface EnrollmentAuditOptions extends ServiceOptions {
  /** Only entries after this sequence number (as typed: checked here). */
  after: string;
  /** Fetch the whole log and check every hash. */
  verify?: boolean;
  /** SEQ:HASH of an earlier head that must still be part of the chain. */
  expectHead?: string;
}

/**
 * `pollen enrollment audit`: the earlier spelling of `pollen audit list|verify --cert-service`,
 * kept working; it says so.
 */
export async function enrollmentAudit(f: EnrollmentAuditOptions, out: Output): Promise<void> {
  out.warn(
    '`pollen enrollment audit` is now `pollen audit list` / `pollen audit verify` with --cert-service',
  );
  if (f.expectHead) {
    const [seq, hash] = f.expectHead.split(':');
    const found = await withAuditSource(f, async (s) =>
      (await readAll((after, limit) => s.entries({ after, limit, redacted: true }))).find(
        (e) => e.seq === Number(seq),
      ),
    );
    if (found?.hash !== hash)
      throw new PollenError(
        'AUDIT_CHECKPOINT_MISMATCH',
        `Entry ${seq} no longer has the hash recorded earlier`,
      );
  }
  if (f.verify || f.expectHead) return auditVerify(f, out);
  const after = Number(f.after);
  if (!Number.isInteger(after) || after < 0)
    throw new PollenError('USAGE', '--after takes a sequence number');
  return auditList({ ...f, limit: '10000' }, out);
}
