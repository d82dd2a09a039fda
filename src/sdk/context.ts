/**
 * Context: what an app knows about where it runs (Flower's Context). `nodeConfig` is set by the
 * site operator (e.g. the path of the local data partition), `runConfig` by the user who starts
 * the run, and `state` persists across the messages a node handles within one run. A ServerApp
 * saves the outputs of its run through `artefacts` (artefacts.ts).
 */
import { PollenError } from '../errors.js';
import { type Artefacts, MemoryArtefacts } from './artefacts.js';
import { RecordDict, validateName } from './records.js';

export type UserConfigValue = number | string | boolean;

/** What the node gave this app process (Python's `context.resources`). */
export interface Resources {
  /** CPUs the node declares for an app (`--resources cpu=N`); null when it declares none. */
  readonly cpu: number | null;
  /** GPU ids given to this process (also its CUDA_VISIBLE_DEVICES); empty for none. */
  readonly gpus: readonly number[];
}
export type UserConfig = Readonly<Record<string, UserConfigValue>>;

export interface Context {
  readonly runId: string;
  readonly nodeId: string;
  readonly nodeConfig: UserConfig;
  readonly runConfig: UserConfig;
  /** Mutable state kept between messages of one run on one node. */
  readonly state: RecordDict;
  /**
   * Where a ServerApp keeps the outputs of its run (the final model, metrics, plots): in a real
   * run the SuperLink's artefact store (`pollen pull RUN_ID`). A ClientApp's refuses
   * (ARTEFACTS_UNAVAILABLE): its outputs stay on its site.
   */
  readonly artefacts: Artefacts;
  /** The GPU ids given to this process (`resources.gpus`); empty for none, as in simulations. */
  readonly gpus: readonly number[];
  readonly resources: Resources;
}

export interface ContextInit {
  runId: string;
  nodeId: string;
  nodeConfig?: Record<string, UserConfigValue>;
  runConfig?: Record<string, UserConfigValue>;
  state?: RecordDict;
  /** Default: a new MemoryArtefacts (kept in memory, for simulations and tests). */
  artefacts?: Artefacts;
  /** Default: none (no CPU count, no GPU), the view of an embedded or simulated app. */
  resources?: Resources;
}

function resourceId(variable: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n))
    throw new PollenError('RESOURCES_INVALID', `${variable} must list whole numbers, not "${text}"`, {
      hint: 'The node sets it from --resources cpu=N,gpu=M; start the app through a SuperNode or leave it unset.',
    });
  return n;
}

/** POLLEN_CPUS and POLLEN_GPUS as the node sets them for an app process (apps/app-env.ts). */
export function resourcesFromEnv(env: Readonly<Record<string, string | undefined>>): Resources {
  const cpu = (env.POLLEN_CPUS ?? '').trim();
  const gpus = (env.POLLEN_GPUS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => resourceId('POLLEN_GPUS', s));
  return { cpu: cpu === '' ? null : resourceId('POLLEN_CPUS', cpu), gpus };
}

function checkConfig(kind: string, config: Record<string, UserConfigValue>): UserConfig {
  const out: Record<string, UserConfigValue> = {};
  for (const [key, value] of Object.entries(config)) {
    validateName(kind, key);
    const ok =
      typeof value === 'string' ||
      typeof value === 'boolean' ||
      (typeof value === 'number' && Number.isFinite(value));
    if (!ok)
      throw new PollenError(
        'RECORD_INVALID',
        `${kind} "${key}" must be a finite number, a string or a boolean`,
      );
    out[key] = value;
  }
  return Object.freeze(out);
}

/**
 * A validated Context; the configs are copied and frozen, the state is shared. The runtime makes
 * the Context of real runs; simulations and tests make their own.
 *
 * @example
 * ```ts
 * const context = createContext({ runId: 'sim', nodeId: SERVER_NODE_ID, runConfig: { 'num-rounds': 2 } });
 * await serverApp.run(grid, context);
 * ```
 */
export function createContext(init: ContextInit): Context {
  if (typeof init.runId !== 'string' || typeof init.nodeId !== 'string')
    throw new PollenError('RECORD_INVALID', 'Context runId and nodeId must be strings');
  const gpus = Object.freeze([...(init.resources?.gpus ?? [])]);
  return Object.freeze({
    runId: init.runId,
    nodeId: init.nodeId,
    nodeConfig: checkConfig('Node config', init.nodeConfig ?? {}),
    runConfig: checkConfig('Run config', init.runConfig ?? {}),
    state: init.state ?? new RecordDict(),
    artefacts: init.artefacts ?? new MemoryArtefacts(),
    gpus,
    resources: Object.freeze({ cpu: init.resources?.cpu ?? null, gpus }),
  });
}
