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
import { ServerApp, type UserConfig, type UserConfigValue } from '../sdk/index.js';
import { decodeNpz } from '../sdk/npz.js';
import {
  Bulyan,
  FedAdagrad,
  FedAdam,
  FedAvg,
  FedAvgM,
  type FedAvgOptions,
  FedMedian,
  FedProx,
  type FedProxOptions,
  FedTrimmedAvg,
  FedYogi,
  Krum,
  MultiKrum,
  QFedAvg,
  type QFedAvgOptions,
  type RoundSummary,
  seededRng,
} from '../strategies/index.js';
import { BUILTIN_PREFIX, BUILTIN_SERVERAPPS, type BuiltinServerAppName, isBuiltin } from './builtin-names.js';

/** Where the artefact of the final model goes (`pollen pull RUN_ID`). */
export const FINAL_MODEL_ARTEFACT = 'final_model.npz';

/** The run config a built-in ServerApp reads, checked and in the strategy's terms. */
export interface BuiltinSettings {
  numRounds: number;
  initialArrays: string;
  /** FedAvg's options and the strategy's own (`eta`, `numMaliciousNodes`, …). */
  strategy: FedAvgOptions & Record<string, unknown>;
  timeoutMs?: number;
}

const HINT =
  'Set it in [tool.pollen.app.config] of pyproject.toml (or package.json → pollen.config), or override it: pollen run APP FEDERATION --run-config KEY=VALUE.';

function bad(key: string, want: string, value: UserConfigValue | undefined): PollenError {
  const got = value === undefined ? 'it is not set' : `got ${JSON.stringify(value)}`;
  return new PollenError('INVALID_ARGUMENT', `Run config "${key}" must be ${want}: ${got}`, {
    hint: HINT,
    data: { key },
  });
}

type Check = (v: UserConfigValue) => boolean;
const integer: Check = (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const fraction: Check = (v) => typeof v === 'number' && v >= 0 && v <= 1;
const nonNegative: Check = (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const positive: Check = (v) => typeof v === 'number' && Number.isFinite(v) && v > 0;
const unit: Check = (v) => typeof v === 'number' && v >= 0 && v < 1;
const path: Check = (v) => typeof v === 'string' && v !== '';

/** Flower's run config names of the strategy's settings, what each takes and its option. */
const OPTIONS = [
  ['fraction-train', 'a number in [0, 1]', fraction, 'fractionTrain'],
  ['fraction-evaluate', 'a number in [0, 1]', fraction, 'fractionEvaluate'],
  ['min-train-nodes', 'an integer >= 0', integer, 'minTrainNodes'],
  ['min-evaluate-nodes', 'an integer >= 0', integer, 'minEvaluateNodes'],
  ['min-available-nodes', 'an integer >= 0', integer, 'minAvailableNodes'],
] as const;

/** A strategy's own run config key (Flower's name): what it takes, its option, whether required. */
type Own = readonly [key: string, want: string, ok: Check, option: string, required?: true];
const FEDOPT: readonly Own[] = [
  ['eta', 'a number > 0', positive, 'eta'],
  ['eta-l', 'a number > 0', positive, 'etaL'],
  ['beta-1', 'a number in [0, 1)', unit, 'beta1'],
  ['beta-2', 'a number in [0, 1)', unit, 'beta2'],
  ['tau', 'a number > 0', positive, 'tau'],
];
const MALICIOUS: Own = ['num-malicious-nodes', 'an integer >= 0', integer, 'numMaliciousNodes'];
type Options = BuiltinSettings['strategy'];

/** Each built-in: its own run config keys and how its strategy is made from the options. */
const BUILTINS: Record<BuiltinServerAppName, { own: readonly Own[]; make: (o: Options) => FedAvg }> = {
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
      ['server-learning-rate', 'a number > 0', positive, 'serverLearningRate'],
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
      ['num-nodes-to-select', 'an integer >= 1', (v) => integer(v) && v !== 0, 'numNodesToSelect'],
    ],
    make: (o) => new MultiKrum(o),
  },
  Bulyan: { own: [MALICIOUS], make: (o) => new Bulyan(o) },
  QFedAvg: {
    own: [
      ['client-learning-rate', 'a number > 0', positive, 'clientLearningRate', true],
      ['q', 'a number >= 0', nonNegative, 'q'],
    ],
    make: (o) => new QFedAvg(o as unknown as QFedAvgOptions), // client-learning-rate is required above
  },
};

/**
 * Read a built-in's settings from the run config: `num-server-rounds` and `initial-arrays` are
 * required, and the strategy's own keys where it needs them (`proximal-mu` for FedProx,
 * `client-learning-rate` for QFedAvg; docs/python.md lists them); the strategy options, `round-timeout` (seconds) and
 * `seed` (reproducible sampling) are optional. Other keys are the ClientApp's and are ignored.
 * Throws INVALID_ARGUMENT naming the key, what it takes and what it holds.
 */
export function builtinSettings(name: BuiltinServerAppName, config: UserConfig): BuiltinSettings {
  const read = (key: string, want: string, ok: Check, required: boolean) => {
    const v = config[key];
    if (v === undefined && !required) return undefined;
    if (v === undefined || !ok(v)) throw bad(key, want, v);
    return v;
  };
  const strategy: BuiltinSettings['strategy'] = {};
  for (const [key, want, ok, option] of OPTIONS) {
    const v = read(key, want, ok, false);
    if (v !== undefined) strategy[option] = v as number;
  }
  for (const [key, want, ok, option, required] of BUILTINS[name].own) {
    const v = read(key, want, ok, required === true);
    if (v !== undefined) strategy[option] = v;
  }
  const seed = read('seed', 'an integer >= 0', integer, false);
  if (seed !== undefined) strategy.rng = seededRng(seed as number);
  const timeout = read('round-timeout', 'a number of seconds > 0', positive, false);
  return {
    numRounds: read('num-server-rounds', 'an integer >= 0', integer, true) as number,
    initialArrays: read('initial-arrays', 'the path of an .npz file in the app', path, true) as string,
    strategy,
    ...(timeout === undefined ? {} : { timeoutMs: (timeout as number) * 1000 }),
  };
}

/** The initial model: an `.npz` inside the bundle folder (never a path that leaves it). */
export function readInitialArrays(bundleDir: string, file: string) {
  const full = resolve(bundleDir, file);
  const inside = relative(resolve(bundleDir), full);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside) || isAbsolute(file))
    throw bad('initial-arrays', 'a path inside the app folder', file);
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
  if (!isBuiltin(name))
    throw new PollenError('APP_INVALID', `Pollen has no built-in ServerApp "${name}"`, {
      hint: `Name one of ${BUILTIN_SERVERAPPS.map((n) => BUILTIN_PREFIX + n).join(', ')} as the serverapp, or a module of the app (module.path:app).`,
      data: { name, builtins: [...BUILTIN_SERVERAPPS] },
    });
  return new ServerApp(async (grid, context) => {
    const s = builtinSettings(name, context.runConfig);
    const initialArrays = readInitialArrays(bundleDir, s.initialArrays);
    const strategy = BUILTINS[name].make(s.strategy);
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
