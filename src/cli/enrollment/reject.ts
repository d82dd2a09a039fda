import type { Output } from '../output.js';
import { decide, type RequestChoice } from './decide.js';

export interface EnrollmentRejectOptions extends RequestChoice {
  /** Why: the site sees it. */
  reason: string;
}

/** `pollen enrollment reject`: reject pending requests with a reason the site will see. */
export async function enrollmentReject(o: EnrollmentRejectOptions, out: Output): Promise<void> {
  await decide(
    o,
    out,
    'reject',
    (c, chosen) => c.reject({ ...chosen, reason: o.reason }),
    (d) => d.rejected,
  );
}
