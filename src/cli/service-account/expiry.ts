/** `--expires`: when a service account stops working, as a duration from now, a date, or `never`. */

import { durationMs } from '../../enrollment/policy-match.js';
import { PollenError } from '../../errors.js';

/** An ISO date (`2027-06-30`, midnight UTC) or date-time (`2027-06-30T12:00:00Z`). */
const DATE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * The expiry `text` names (epoch ms), or undefined for `never`: a duration from `now` (`30d`,
 * `12h`, `2w`, `1d12h`) or an ISO date. INVALID_ARGUMENT for anything else and for a past time.
 */
export function parseExpiry(text: string, now: number): number | undefined {
  const t = text.trim();
  if (t === 'never') return undefined;
  const ms = durationMs(t);
  const at = ms !== undefined ? now + ms : DATE.test(t) ? Date.parse(t) : Number.NaN;
  if (!Number.isFinite(at))
    throw new PollenError('INVALID_ARGUMENT', `Not an expiry: "${text}"`, {
      hint: 'Give --expires as a duration (30d, 12h, 2w), a date (2027-06-30, midnight UTC) or never.',
    });
  if (at <= now)
    throw new PollenError(
      'INVALID_ARGUMENT',
      `The expiry ${new Date(at).toISOString()} is not in the future`,
      {
        hint: 'Give --expires as a duration (30d) or a future date.',
      },
    );
  return at;
}
