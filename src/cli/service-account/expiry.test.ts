import { describe, expect, it } from 'vitest';
import { parseExpiry } from './expiry.js';

const NOW = Date.parse('2026-12-05T12:00:00Z');
const DAY = 86_400_000;

describe('--expires', () => {
  it('takes a duration from now, an ISO date or date-time, or never', () => {
    expect(parseExpiry('30d', NOW)).toBe(NOW + 30 * DAY);
    expect(parseExpiry('1d12h', NOW)).toBe(NOW + 36 * 3_600_000);
    expect(parseExpiry(' 2w ', NOW)).toBe(NOW + 14 * DAY);
    expect(parseExpiry('2027-06-30', NOW)).toBe(Date.parse('2027-06-30T00:00:00Z'));
    expect(parseExpiry('2027-06-30T12:30:00+02:00', NOW)).toBe(Date.parse('2027-06-30T10:30:00Z'));
    expect(parseExpiry('never', NOW)).toBeUndefined();
  });

  it('refuses what is no expiry, and a time that is not in the future (INVALID_ARGUMENT)', () => {
    for (const bad of [
      'soon',
      '30',
      '30 days',
      '',
      '0d',
      '2026-13-01',
      'June 30',
      '2026-12-05',
      '2026-12-05T12:00Z',
    ])
      expect(() => parseExpiry(bad, NOW), bad).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => parseExpiry('2026-01-01', NOW)).toThrow(
      'The expiry 2026-01-01T00:00:00.000Z is not in the future',
    );
  });
});
