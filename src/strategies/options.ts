/** Checks for the strategies' numeric options: the default when absent, INVALID_ARGUMENT when out of range. */
import { PollenError } from '../sdk/index.js';

/** `value` (or `fallback` when undefined) if finite and `ok`; INVALID_ARGUMENT saying `rule` otherwise. */
export function numberOption(
  name: string,
  value: number | undefined,
  fallback: number,
  ok: (v: number) => boolean,
  rule: string,
): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))
    throw new PollenError('INVALID_ARGUMENT', `${name} must be ${rule}, got ${String(v)}`);
  return v;
}

/** An integer option >= `min`. */
export function integerOption(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
): number {
  return numberOption(
    name,
    value,
    fallback,
    (v) => Number.isSafeInteger(v) && v >= min,
    `an integer >= ${min}`,
  );
}
