import { PollenError } from '../../errors.js';

/** `--audit-checkpoint-interval SECONDS` (1 s to 1 day) as milliseconds; undefined: the default. */
export function auditCheckpointMs(seconds: string | undefined): number | undefined {
  if (seconds === undefined) return undefined;
  const s = Number(seconds);
  if (!Number.isFinite(s) || s < 1 || s > 86_400)
    throw new PollenError('INVALID_ARGUMENT', '--audit-checkpoint-interval takes seconds, from 1 to 86400');
  return s * 1000;
}

export const AUDIT_CHECKPOINT_HELP =
  'how often the audit trail head is signed, in seconds (default 300; also on stop)';
