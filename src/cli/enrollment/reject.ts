import type { Output } from '../output.js';
import { decide, type RequestChoice } from './decide.js';

export interface EnrollmentRejectOptions extends RequestChoice {
  /** Why: the site sees it (optional, as in FLARE; the service records a default). */
  reason?: string;
}

/** `pollen enrollment reject`: reject pending requests with a reason the site will see. */
export async function enrollmentReject(o: EnrollmentRejectOptions, out: Output): Promise<void> {
  await decide(
    o,
    out,
    'reject',
    (c, chosen) => c.reject({ ...chosen, ...(o.reason !== undefined && { reason: o.reason }) }),
    (d) => d.rejected,
  );
}
