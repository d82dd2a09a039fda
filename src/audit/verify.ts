/**
 * Verifying an audit trail where the reader is (the CLI), not where it is stored: the chain from
 * its first entry, each checkpoint's signature and certificate against the project root, and each
 * checkpoint against the chain, so editing, removing or reordering entries, truncating the tail,
 * and recomputing the whole chain from a changed entry are all found.
 */
import { PollenError } from '../errors.js';
import { type Checkpoint, checkpointSignatureProblem } from './checkpoint.js';
import { AUDIT_GENESIS, auditHash, type ListedEntry } from './entry.js';

export interface AuditVerification {
  entries: number;
  head: { seq: number; hash: string } | null;
  /** Checkpoints checked (the service's, and one the user saved). */
  checkpoints: number;
  /** The newest checkpoint the chain matched. */
  anchoredAt: number | null;
  /** Entries the reader may not see: checked through their digest. */
  redacted: number;
  /** Of those, legacy entries without a digest, whose links were taken on trust. */
  unchecked: number;
}

function broken(seq: number, what: string): PollenError {
  return new PollenError('AUDIT_CHAIN_BROKEN', `The audit chain is broken at entry ${seq}: ${what}`, {
    data: { seq, what },
  });
}

/** The chain from the genesis, entry by entry: the first entry that does not follow is reported. */
function verifyChain(entries: readonly ListedEntry[]): void {
  let prev = { seq: 0, hash: AUDIT_GENESIS };
  for (const e of entries) {
    if (e.seq <= prev.seq) throw broken(e.seq, `it comes after entry ${prev.seq} (entries reordered)`);
    if (e.seq !== prev.seq + 1)
      throw broken(prev.seq + 1, `it is missing (entry ${e.seq} follows entry ${prev.seq})`);
    if (e.prevHash !== prev.hash)
      throw broken(e.seq, 'it does not name the hash of the entry before it (entries removed or reordered)');
    if (auditHash(prev.hash, e) !== e.hash)
      throw broken(e.seq, 'its content does not match its hash (the entry was changed)');
    prev = { seq: e.seq, hash: e.hash };
  }
}

/**
 * Check `entries` (the whole log, oldest first) and `checkpoints` (the service's, plus one the
 * user saved) against `root`, the project root certificate. Throws the first problem found:
 * AUDIT_CHAIN_BROKEN, AUDIT_CHECKPOINT_SIGNATURE, AUDIT_TRUNCATED or AUDIT_CHECKPOINT_MISMATCH.
 */
export function verifyAuditTrail(
  entries: readonly ListedEntry[],
  checkpoints: readonly Checkpoint[],
  root: string | undefined,
): AuditVerification {
  verifyChain(entries);
  const last = entries.at(-1);
  const head = last ? { seq: last.seq, hash: last.hash } : null;
  const bySeq = new Map(entries.map((e) => [e.seq, e]));
  let anchoredAt: number | null = null;
  for (const c of checkpoints) {
    if (root === undefined)
      throw new PollenError(
        'AUDIT_CHECKPOINT_SIGNATURE',
        'No project root certificate to check checkpoints against',
        {
          hint: 'Give the project root certificate (--ca-cert for a Certificate Service; a connection entry with a root or kit for a SuperLink).',
        },
      );
    const problem = checkpointSignatureProblem(c, root);
    if (problem)
      throw new PollenError(
        'AUDIT_CHECKPOINT_SIGNATURE',
        `The checkpoint of ${c.component} at entry ${c.seq} is not valid: ${problem}`,
        { data: { seq: c.seq, component: c.component } },
      );
    if (!head || c.seq > head.seq)
      throw new PollenError(
        'AUDIT_TRUNCATED',
        `The audit log ends at entry ${head?.seq ?? 0}, but ${c.component} signed a checkpoint at entry ${c.seq} (${c.at})`,
        { data: { seq: c.seq, head: head?.seq ?? 0 } },
      );
    if (bySeq.get(c.seq)?.hash !== c.hash)
      throw new PollenError(
        'AUDIT_CHECKPOINT_MISMATCH',
        `Entry ${c.seq} no longer has the hash ${c.component} signed at ${c.at}: the chain was recomputed`,
        { data: { seq: c.seq, signed: c.hash, found: bySeq.get(c.seq)?.hash ?? null } },
      );
    anchoredAt = Math.max(anchoredAt ?? 0, c.seq);
  }
  const redacted = entries.filter((e) => 'redacted' in e);
  return {
    entries: entries.length,
    head,
    checkpoints: checkpoints.length,
    anchoredAt,
    redacted: redacted.length,
    unchecked: redacted.filter((e) => e.digest === null).length,
  };
}
