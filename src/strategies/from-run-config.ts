/**
 * A strategy of the catalogue named and set up by a run config, with Flower's names in the run
 * config's kebab-case (`fraction-train`, `eta`, `beta-1`, `num-malicious-nodes`, …): what the
 * built-in ServerApps (`pollen:FedAdam`) run, and what an app's own ServerApp uses to let
 * `pollen run APP FEDERATION --run-config strategy=FedMedian` pick its strategy.
 */
import { PollenError, type UserConfig, type UserConfigValue } from '../sdk/index.js';
import { Bulyan } from './bulyan.js';
import { FedAdagrad } from './fedadagrad.js';
import { FedAdam } from './fedadam.js';
import { FedAvg, type FedAvgOptions, seededRng } from './fedavg.js';
import { FedAvgM } from './fedavgm.js';
import { FedMedian } from './fedmedian.js';
import { FedProx, type FedProxOptions } from './fedprox.js';
import { FedTrimmedAvg } from './fedtrimmedavg.js';
import { FedYogi } from './fedyogi.js';
import { Krum } from './krum.js';
import { MultiKrum } from './multikrum.js';
import { STRATEGY_NAMES, type StrategyName } from './names.js';
import { QFedAvg, type QFedAvgOptions } from './qfedavg.js';

export { STRATEGY_NAMES, type StrategyName };

/** FedAvg's options and the strategy's own (`eta`, `numMaliciousNodes`, …). */
export type StrategyOptions = FedAvgOptions & Record<string, unknown>;

export const RUN_CONFIG_HINT =
  'Set it in [tool.pollen.app.config] of pyproject.toml (or package.json → pollen.config), or override it: pollen run APP FEDERATION --run-config KEY=VALUE.';

/** INVALID_ARGUMENT: run config `key` must be `want`, and what it holds. */
export function badRunConfig(key: string, want: string, value: UserConfigValue | undefined): PollenError {
  const got = value === undefined ? 'it is not set' : `got ${JSON.stringify(value)}`;
  return new PollenError('INVALID_ARGUMENT', `Run config "${key}" must be ${want}: ${got}`, {
    hint: RUN_CONFIG_HINT,
    data: { key },
  });
}

type Check = (v: UserConfigValue) => boolean;
export const isCount: Check = (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const fraction: Check = (v) => typeof v === 'number' && v >= 0 && v <= 1;
const nonNegative: Check = (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
export const isPositive: Check = (v) => typeof v === 'number' && Number.isFinite(v) && v > 0;
const unit: Check = (v) => typeof v === 'number' && v >= 0 && v < 1;

/** Run config `key` if set and `ok`; undefined when unset and not required; INVALID_ARGUMENT otherwise. */
export function readRunConfig(
  config: UserConfig,
  key: string,
  want: string,
  ok: Check,
  required = false,
): UserConfigValue | undefined {
  const v = config[key];
  if (v === undefined && !required) return undefined;
  if (v === undefined || !ok(v)) throw badRunConfig(key, want, v);
  return v;
}

/** A run config key (Flower's name), what it takes, its option, whether required. */
type Key = readonly [key: string, want: string, ok: Check, option: string, required?: true];

/** FedAvg's options, shared by every strategy. */
const SHARED: readonly Key[] = [
  ['fraction-train', 'a number in [0, 1]', fraction, 'fractionTrain'],
  ['fraction-evaluate', 'a number in [0, 1]', fraction, 'fractionEvaluate'],
  ['min-train-nodes', 'an integer >= 0', isCount, 'minTrainNodes'],
  ['min-evaluate-nodes', 'an integer >= 0', isCount, 'minEvaluateNodes'],
  ['min-available-nodes', 'an integer >= 0', isCount, 'minAvailableNodes'],
];
const FEDOPT: readonly Key[] = [
  ['eta', 'a number > 0', isPositive, 'eta'],
  ['eta-l', 'a number > 0', isPositive, 'etaL'],
  ['beta-1', 'a number in [0, 1)', unit, 'beta1'],
  ['beta-2', 'a number in [0, 1)', unit, 'beta2'],
  ['tau', 'a number > 0', isPositive, 'tau'],
];
const MALICIOUS: Key = ['num-malicious-nodes', 'an integer >= 0', isCount, 'numMaliciousNodes'];

/** Each strategy: its own run config keys and how it is made from the options. */
const CATALOGUE: Record<StrategyName, { own: readonly Key[]; make: (o: StrategyOptions) => FedAvg }> = {
  FedAvg: { own: [], make: (o) => new FedAvg(o) },
  FedProx: {
    own: [['proximal-mu', 'a number >= 0', nonNegative, 'proximalMu', true]],
    make: (o) => new FedProx(o as unknown as FedProxOptions), // proximal-mu is required above
  },
  FedAdam: { own: FEDOPT, make: (o) => new FedAdam(o) },
  FedYogi: { own: FEDOPT, make: (o) => new FedYogi(o) },
  FedAdagrad: { own: FEDOPT.filter(([key]) => !key.startsWith('beta')), make: (o) => new FedAdagrad(o) },
  FedAvgM: {
    own: [
      ['server-learning-rate', 'a number > 0', isPositive, 'serverLearningRate'],
      ['server-momentum', 'a number in [0, 1)', unit, 'serverMomentum'],
    ],
    make: (o) => new FedAvgM(o),
  },
  FedMedian: { own: [], make: (o) => new FedMedian(o) },
  FedTrimmedAvg: {
    own: [['beta', 'a number in [0, 0.5)', (v) => typeof v === 'number' && v >= 0 && v < 0.5, 'beta']],
    make: (o) => new FedTrimmedAvg(o),
  },
  Krum: { own: [MALICIOUS], make: (o) => new Krum(o) },
  MultiKrum: {
    own: [
      MALICIOUS,
      ['num-nodes-to-select', 'an integer >= 1', (v) => isCount(v) && v !== 0, 'numNodesToSelect'],
    ],
    make: (o) => new MultiKrum(o),
  },
  Bulyan: { own: [MALICIOUS], make: (o) => new Bulyan(o) },
  QFedAvg: {
    own: [
      ['client-learning-rate', 'a number > 0', isPositive, 'clientLearningRate', true],
      ['q', 'a number >= 0', nonNegative, 'q'],
    ],
    make: (o) => new QFedAvg(o as unknown as QFedAvgOptions), // client-learning-rate is required above
  },
};

/** Whether `name` is a strategy of the catalogue (spelt as Flower spells it). */
export function isStrategyName(name: unknown): name is StrategyName {
  return typeof name === 'string' && (STRATEGY_NAMES as readonly string[]).includes(name);
}

/**
 * The options of strategy `name` from the run config: FedAvg's (`fraction-train`,
 * `min-train-nodes`, …), the strategy's own (Flower's names: `eta`, `beta-1`, `proximal-mu`,
 * `num-malicious-nodes`, …; `proximal-mu` and `client-learning-rate` are required where they
 * apply) and `seed` (reproducible sampling), over `defaults`. Other keys are ignored.
 * INVALID_ARGUMENT naming the key, what it takes and what it holds.
 */
export function strategyOptions(
  name: StrategyName,
  config: UserConfig,
  defaults: FedAvgOptions = {},
): StrategyOptions {
  const options: StrategyOptions = { ...defaults };
  for (const [key, want, ok, option, required] of [...SHARED, ...CATALOGUE[name].own]) {
    const v = readRunConfig(config, key, want, ok, required === true);
    if (v !== undefined) options[option] = v;
  }
  const seed = readRunConfig(config, 'seed', 'an integer >= 0', isCount);
  if (seed !== undefined) options.rng = seededRng(seed as number);
  return options;
}

/**
 * Strategy `name` of the catalogue (`FedAvg` … `QFedAvg`, as Flower spells them), set up from
 * the run config with Flower's parameter names in kebab-case (see `strategyOptions` and
 * docs/strategies.md) over `defaults`. An unknown name, or a setting out of range, is
 * INVALID_ARGUMENT naming the run config key (`strategy` for the name).
 *
 * @example
 * ```ts
 * // pollen run APP FEDERATION --run-config strategy=FedAdam --run-config eta=0.01
 * const name = context.runConfig['strategy'] ?? 'FedAvg';
 * const strategy = strategyFromRunConfig(name, context.runConfig, { minTrainNodes: 1 });
 * const result = await strategy.start({ grid, initialArrays, numRounds: 5 });
 * ```
 */
export function strategyFromRunConfig(
  name: UserConfigValue,
  config: UserConfig,
  defaults: FedAvgOptions = {},
): FedAvg {
  if (!isStrategyName(name)) throw badRunConfig('strategy', `one of ${STRATEGY_NAMES.join(', ')}`, name);
  return makeStrategy(name, strategyOptions(name, config, defaults));
}

/** Strategy `name` with `options` as `strategyOptions` reads them. */
export function makeStrategy(name: StrategyName, options: StrategyOptions): FedAvg {
  return CATALOGUE[name].make(options);
}
