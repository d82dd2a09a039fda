/** The run config of a run: what the app declares, with the overrides of whoever starts it. */
import { PollenError } from '../errors.js';
import type { UserConfigValue } from '../sdk/context.js';

type Config = Readonly<Record<string, UserConfigValue>>;

/**
 * The app's declared run config (package.json, "pollen" → "config") with `overrides` applied;
 * INVALID_ARGUMENT, naming the keys the app has, for an override of a key it does not declare
 * (the app would never read it).
 */
export function runConfigOf(declared: Config, overrides: Config): Record<string, UserConfigValue> {
  for (const key of Object.keys(overrides))
    if (!Object.hasOwn(declared, key))
      throw new PollenError('INVALID_ARGUMENT', `The app has no run config "${key}"`, {
        hint: `Its keys: ${Object.keys(declared).join(', ') || '(none)'}`,
      });
  return { ...declared, ...overrides };
}
