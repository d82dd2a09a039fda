import type { Output } from '../output.js';
import { decide, type RequestChoice } from './decide.js';

export type EnrollmentApproveOptions = RequestChoice;

/** `pollen enrollment approve`: approve pending requests by name, request id or pattern. */
export async function enrollmentApprove(o: EnrollmentApproveOptions, out: Output): Promise<void> {
  await decide(
    o,
    out,
    'approve',
    (c, chosen) => c.approve(chosen),
    (d) => d.approved,
  );
}
