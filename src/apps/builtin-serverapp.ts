/**
 * Built-in ServerApps: an app whose `serverapp` is `pollen:FedAvg` (or another strategy of the
 * catalogue, docs/strategies.md) brings only
 * its ClientApp (Python or TypeScript); the rounds and the aggregation run in Pollen's TypeScript
 * strategies, set up from the run config with Flower's names, starting from an `.npz` file of the
 * bundle (`initial-arrays`). The final model becomes the run's artefact `final_model.npz`.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import { PollenError } from '../errors.js';
import { ServerApp, type UserConfig } from '../sdk/index.js';
import { decodeNpz } from '../sdk/npz.js';
import {
  badRunConfig,
  isCount,
  isPositive,
  isStrategyName,
  makeStrategy,
  readRunConfig,
  type StrategyOptions,
  strategyOptions,
} from '../strategies/from-run-config.js';
import type { RoundSummary } from '../strategies/index.js';
import { BUILTIN_PREFIX, BUILTIN_SERVERAPPS, type BuiltinServerAppName } from './builtin-names.js';

/** Where the artefact of the final model goes (`pollen pull RUN_ID`). */
export const FINAL_MODEL_ARTEFACT = 'final_model.npz';

/** The run config a built-in ServerApp reads, checked and in the strategy's terms. */
export interface BuiltinSettings {
  numRounds: number;
  initialArrays: string;
  /** FedAvg's options and the strategy's own (`eta`, `numMaliciousNodes`, …). */
  strategy: StrategyOptions;
  timeoutMs?: number;
}

/**
 * Read a built-in's settings from the run config: `num-server-rounds` and `initial-arrays` are
 * required, and the strategy's own keys where it needs them (`proximal-mu` for FedProx,
 * `client-learning-rate` for QFedAvg; docs/python.md lists them); the strategy options, `round-timeout` (seconds) and
 * `seed` (reproducible sampling) are optional. Other keys are the ClientApp's and are ignored.
 * Throws INVALID_ARGUMENT naming the key, what it takes and what it holds.
 */
export function builtinSettings(name: BuiltinServerAppName, config: UserConfig): BuiltinSettings {
  const numRounds = readRunConfig(config, 'num-server-rounds', 'an integer >= 0', isCount, true) as number;
  const initialArrays = readRunConfig(
    config,
    'initial-arrays',
    'the path of an .npz file in the app',
    (v) => typeof v === 'string' && v !== '',
    true,
  ) as string;
  const strategy = strategyOptions(name, config);
  const timeout = readRunConfig(config, 'round-timeout', 'a number of seconds > 0', isPositive);
  return {
    numRounds,
    initialArrays,
    strategy,
    ...(timeout === undefined ? {} : { timeoutMs: (timeout as number) * 1000 }),
  };
}

/** The initial model: an `.npz` inside the bundle folder (never a path that leaves it). */
export function readInitialArrays(bundleDir: string, file: string) {
  const full = resolve(bundleDir, file);
  const inside = relative(resolve(bundleDir), full);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside) || isAbsolute(file))
    throw badRunConfig('initial-arrays', 'a path inside the app folder', file);
  let bytes: Buffer;
  try {
    bytes = readFileSync(full);
  } catch (e) {
    throw new PollenError('FILE_NOT_FOUND', `The app has no initial-arrays file ${file}`, {
      hint: 'Put the .npz file (numpy.savez) in the app folder and list it in the bundle, or fix the run config "initial-arrays".',
      detail: String(e),
    });
  }
  return decodeNpz(bytes, `initial-arrays ${file}`);
}

/** One line per round in the run log; the numbers also go with the run (`pollen list --run-id`). */
function printRound(r: RoundSummary): void {
  const metrics: Record<string, number> = {};
  for (const record of [r.trainMetrics, r.evaluateMetrics, r.serverEvaluateMetrics])
    for (const [key, value] of record ?? []) if (typeof value === 'number') metrics[key] = value;
  process.stdout.write(
    `round ${r.serverRound}: ${r.trainNodeIds.length} nodes trained, ${r.failures.length} failed, ${r.seconds.toFixed(1)} s ${JSON.stringify(metrics)}\n`,
  );
}

/**
 * The ServerApp of `pollen:NAME`: NAME's strategy over the run config's settings, from the
 * bundle's initial arrays; saves the final model as the artefact `final_model.npz`. An unknown
 * NAME is APP_INVALID at once; the settings are read (and refused) when the run starts.
 *
 * @example
 * ```ts
 * const app = builtinServerApp('FedAvg', '/var/lib/pollen/apps/sha256-…');
 * await app.run(grid, context); // context.runConfig: { 'num-server-rounds': 3, 'initial-arrays': 'model.npz' }
 * ```
 */
export function builtinServerApp(name: string, bundleDir: string): ServerApp {
  if (!isStrategyName(name))
    throw new PollenError('APP_INVALID', `Pollen has no built-in ServerApp "${name}"`, {
      hint: `Name one of ${BUILTIN_SERVERAPPS.map((n) => BUILTIN_PREFIX + n).join(', ')} as the serverapp, or a module of the app (module.path:app).`,
      data: { name, builtins: [...BUILTIN_SERVERAPPS] },
    });
  return new ServerApp(async (grid, context) => {
    const s = builtinSettings(name, context.runConfig);
    const initialArrays = readInitialArrays(bundleDir, s.initialArrays);
    const strategy = makeStrategy(name, s.strategy);
    const result = await strategy.start({
      grid,
      initialArrays,
      numRounds: s.numRounds,
      ...(s.timeoutMs === undefined ? {} : { timeoutMs: s.timeoutMs }),
      onRound: printRound,
    });
    await context.artefacts.save(FINAL_MODEL_ARTEFACT, result.arrays);
  });
}
