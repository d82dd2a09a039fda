/** The run config of a run: what the app declares, with the overrides of whoever starts it. */
import { PollenError } from '../errors.js';
import type { UserConfigValue } from '../sdk/context.js';
import { nearest } from '../util/text.js';

type Config = Readonly<Record<string, UserConfigValue>>;

/**
 * The app's declared run config (package.json, "pollen" → "config") with `overrides` applied.
 * An override of a key the app does not declare (a typo would otherwise run with the default
 * unnoticed) is RUN_CONFIG_UNKNOWN, naming the keys the app declares and the nearest one.
 * `pollen run` (before anything is pushed), `pollen simulate` and the SuperLink all check it.
 */
export function runConfigOf(
  declared: Config,
  overrides: Config,
  app?: string,
): Record<string, UserConfigValue> {
  const keys = Object.keys(declared);
  for (const key of Object.keys(overrides)) {
    if (Object.hasOwn(declared, key)) continue;
    const near = nearest(key, keys);
    throw new PollenError('RUN_CONFIG_UNKNOWN', `The app${app ? ` ${app}` : ''} has no run config "${key}"`, {
      hint: `${near ? `Did you mean ${near}? ` : ''}${
        keys.length ? `It declares: ${keys.join(', ')}.` : 'It declares no run config keys.'
      } Declare a new key with its default in the app's package.json (pollen.config).`,
      data: { key, declared: keys, ...(near && { suggestion: near }) },
    });
  }
  return { ...declared, ...overrides };
}
