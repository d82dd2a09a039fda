import { PollenError } from '../../errors.js';
import type { Output } from '../output.js';
import { type AuditSourceOptions, readAll, withAuditSource } from './source.js';

/**
 * `pollen audit checkpoint`: the newest signed checkpoint, to keep somewhere the server's
 * operators cannot write (`> FILE`; later `pollen audit verify --checkpoint FILE`).
 */
export async function auditCheckpoint(f: AuditSourceOptions, out: Output): Promise<void> {
  const checkpoint = await withAuditSource(f, async (s) => {
    const newest = (await readAll((after, limit) => s.checkpoints(after, limit))).at(-1);
    if (!newest) throw new PollenError('AUDIT_NO_CHECKPOINT', `${s.name} has signed no audit checkpoint yet`);
    return newest;
  });
  // As text, the checkpoint itself: `> FILE` saves what `verify --checkpoint` reads.
  out.result({ checkpoint }, (d) => JSON.stringify(d.checkpoint, null, 2));
}
