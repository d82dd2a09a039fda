/**
 * The names of the built-in ServerApps (`pollen:FedAvg`, …): what building, submitting and
 * launching a run need to know, without loading the strategies (apps/builtin-serverapp.ts runs them).
 */

import { STRATEGY_NAMES, type StrategyName } from '../strategies/names.js';

/** The strategies an app may name as its ServerApp, `pollen:NAME`. */
export const BUILTIN_SERVERAPPS = STRATEGY_NAMES;
export type BuiltinServerAppName = StrategyName;

export const BUILTIN_PREFIX = 'pollen:';

/** The built-in's name when `ref` (a manifest's `serverapp`) names one (`pollen:FedAvg`), else undefined. */
export function builtinServerAppName(ref: string): string | undefined {
  return ref.startsWith(BUILTIN_PREFIX) ? ref.slice(BUILTIN_PREFIX.length) : undefined;
}

export function isBuiltin(name: string): name is BuiltinServerAppName {
  return (BUILTIN_SERVERAPPS as readonly string[]).includes(name);
}
