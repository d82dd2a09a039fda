import { PollenError } from '../errors.js';
import type { UserConfigValue } from '../sdk/context.js';

/** `k=v` pairs: numbers and true/false become typed values, the rest strings. */
export function parseConfigPairs(pairs: string[], flag: string): Record<string, UserConfigValue> {
  const out: Record<string, UserConfigValue> = {};
  for (const pair of pairs.flatMap((p) => p.split(/\s+(?=[^\s=]+=)/))) {
    const i = pair.indexOf('=');
    if (i < 1) throw new PollenError('INVALID_ARGUMENT', `${flag} takes KEY=VALUE (got "${pair}")`);
    const key = pair.slice(0, i).trim();
    const raw = pair
      .slice(i + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1');
    out[key] =
      raw === 'true'
        ? true
        : raw === 'false'
          ? false
          : raw !== '' && Number.isFinite(Number(raw))
            ? Number(raw)
            : raw;
  }
  return out;
}
