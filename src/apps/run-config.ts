import { PollenError } from '../errors.js';
import type { UserConfigValue } from '../sdk/context.js';
import { nearest } from '../util/text.js';

/**
 * Refuse a run config override the app does not declare (a typo would otherwise run with the
 * default unnoticed): RUN_CONFIG_UNKNOWN naming the keys it declares and the nearest one. Both
 * `pollen run` (before anything is pushed) and the SuperLink (for any client) check it.
 */
export function checkRunConfigKeys(
  overrides: Readonly<Record<string, UserConfigValue>>,
  declared: Readonly<Record<string, UserConfigValue>>,
  app: string,
): void {
  const keys = Object.keys(declared);
  for (const key of Object.keys(overrides)) {
    if (key in declared) continue;
    const near = nearest(key, keys);
    throw new PollenError('RUN_CONFIG_UNKNOWN', `The app ${app} has no run config "${key}"`, {
      hint: `${near ? `Did you mean ${near}? ` : ''}${
        keys.length ? `It declares: ${keys.join(', ')}.` : 'It declares no run config keys.'
      } Declare a new key with its default in the app's package.json (pollen.config).`,
      data: { key, declared: keys, ...(near && { suggestion: near }) },
    });
  }
}
