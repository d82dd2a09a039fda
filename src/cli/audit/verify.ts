import { readFileSync } from 'node:fs';
import type { Checkpoint } from '../../audit/checkpoint.js';
import { checkpointSchema } from '../../audit/schemas.js';
import { verifyAuditTrail } from '../../audit/verify.js';
import { PollenError } from '../../errors.js';
import { bold, dim, type Output } from '../output.js';
import { type AuditSourceOptions, readAll, withAuditSource } from './source.js';

export interface AuditVerifyOptions extends AuditSourceOptions {
  /** A checkpoint saved earlier (`pollen audit checkpoint > FILE`). */
  checkpoint?: string;
}

/** A saved checkpoint, read and checked for shape (its signature is checked with the rest). */
export function readCheckpointFile(path: string): Checkpoint {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new PollenError('FILE_NOT_FOUND', `Cannot read the checkpoint ${path}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PollenError('AUDIT_CHECKPOINT_INVALID', `${path} is not JSON`);
  }
  // `pollen audit checkpoint --json` wraps it: { checkpoint: {...} }
  const body = (parsed as { checkpoint?: unknown } | null)?.checkpoint ?? parsed;
  const r = checkpointSchema.safeParse(body);
  if (!r.success) throw new PollenError('AUDIT_CHECKPOINT_INVALID', `${path} is not an audit checkpoint`);
  return r.data;
}

/**
 * `pollen audit verify`: fetch the whole trail and its checkpoints, and check them here: the
 * chain, each checkpoint's signature and certificate against the project root, each checkpoint
 * against the chain, and a checkpoint the user saved, so a rollback of the whole store is found.
 */
export async function auditVerify(f: AuditVerifyOptions, out: Output): Promise<void> {
  const saved = f.checkpoint === undefined ? undefined : readCheckpointFile(f.checkpoint);
  const result = await withAuditSource(f, async (s) => {
    const entries = await readAll((after, limit) => s.entries({ after, limit, redacted: true }));
    const checkpoints = await readAll((after, limit) => s.checkpoints(after, limit));
    const check = verifyAuditTrail(entries, saved ? [...checkpoints, saved] : checkpoints, s.root);
    return { source: s.name, verified: true, ...check, savedCheckpoint: saved ? saved.seq : null };
  });
  out.result(result, (d) => [
    `${bold('audit trail verified')} on ${d.source}: ${d.entries} entries, head ${d.head ? `${d.head.seq}:${d.head.hash}` : '(empty)'}`,
    d.anchoredAt === null
      ? dim('  no signed checkpoint yet: a truncated tail or a recomputed chain would not be found')
      : `  ${d.checkpoints} signed checkpoint(s) match; the newest anchors entry ${d.anchoredAt}`,
    ...(d.savedCheckpoint !== null ? [`  your saved checkpoint (entry ${d.savedCheckpoint}) matches`] : []),
    ...(d.redacted > 0
      ? [
          dim(
            `  ${d.redacted} entries of other organisations checked by digest (${d.unchecked} older ones taken on trust)`,
          ),
        ]
      : []),
  ]);
}
