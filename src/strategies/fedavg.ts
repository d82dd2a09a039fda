/**
 * FedAvg (McMahan et al., 2017): each round samples nodes, sends them the global arrays, and
 * averages their replies' arrays and metrics weighted by each reply's `num-examples`; the same
 * for evaluation, metrics only. Flower's `FedAvg` of the message API, with its options.
 *
 * Sampling and the option checks are plain functions (tested alone); the averaging itself is
 * records.ts over the kernel in aggregate.ts.
 */
import {
  type ArrayRecord,
  ConfigRecord,
  Message,
  type MessageType,
  MetricRecord,
  PollenError,
  RecordDict,
} from '../sdk/index.js';
import type { Precision } from './aggregate.js';
import { checkFloatArrays } from './elementwise.js';
import {
  aggregateArrayRecords,
  aggregateMetricRecords,
  contentsOf,
  replyMetrics,
  replyWeight,
} from './records.js';
import { dropNonFinite, nonFiniteArray, type TrainReplies, trainReplies } from './replies.js';
import {
  type EvaluateAggregate,
  ownStrategy,
  type ReplyFailure,
  Strategy,
  type TrainAggregate,
} from './strategy.js';

export interface FedAvgConfig {
  /** Share of the available nodes sampled for training each round (0..1). */
  fractionTrain: number;
  /** Share of the available nodes sampled for evaluation each round (0..1; 0 skips it). */
  fractionEvaluate: number;
  /** At least this many nodes train in a round. */
  minTrainNodes: number;
  /** At least this many nodes evaluate in a round (when fractionEvaluate > 0). */
  minEvaluateNodes: number;
  /** A round does not start with fewer nodes available. */
  minAvailableNodes: number;
}

/** Flower's defaults: every node trains and evaluates, at least two of them. */
export const FEDAVG_DEFAULTS: Readonly<FedAvgConfig> = Object.freeze({
  fractionTrain: 1,
  fractionEvaluate: 1,
  minTrainNodes: 2,
  minEvaluateNodes: 2,
  minAvailableNodes: 2,
});

/** A source of uniform numbers in [0, 1), like Math.random. */
export type Rng = () => number;

/** FedAvg's options; each defaults as in Flower (`fraction_train`, `min_train_nodes`, …). */
export interface FedAvgOptions extends Partial<FedAvgConfig> {
  /** The metric in every reply that weighs it (default `num-examples`). */
  weightedByKey?: string;
  /** The name of the ArrayRecord in the messages the strategy sends (default `arrays`). */
  arrayRecordKey?: string;
  /** The name of the ConfigRecord in the messages the strategy sends (default `config`). */
  configRecordKey?: string;
  /** Randomness for sampling (default Math.random; `seededRng(seed)` repeats runs exactly). */
  rng?: Rng;
}

function invalid(message: string, hint?: string): PollenError {
  return new PollenError('INVALID_ARGUMENT', message, hint === undefined ? {} : { hint });
}

/** Merge with FEDAVG_DEFAULTS and validate; throws INVALID_ARGUMENT on a bad value. */
export function fedAvgConfig(config: Partial<FedAvgConfig> = {}): FedAvgConfig {
  const c: FedAvgConfig = { ...FEDAVG_DEFAULTS, ...config };
  for (const key of ['fractionTrain', 'fractionEvaluate'] as const) {
    const v = c[key];
    if (typeof v !== 'number' || !(v >= 0 && v <= 1))
      throw invalid(`${key} must be in [0, 1], got ${String(v)}`);
  }
  for (const key of ['minTrainNodes', 'minEvaluateNodes', 'minAvailableNodes'] as const) {
    const v = c[key];
    if (!Number.isSafeInteger(v) || v < 0) throw invalid(`${key} must be an integer >= 0, got ${String(v)}`);
  }
  return c;
}

/**
 * A small seeded generator (mulberry32): uniform numbers in [0, 1), the same sequence for the
 * same seed, for reproducible sampling, shuffles and simulations.
 *
 * @example
 * ```ts
 * const strategy = new FedAvg({ fractionTrain: 0.5, rng: seededRng(42) }); // the same nodes each run
 * const rng = seededRng(7);
 * rng(); // 0 <= x < 1
 * ```
 */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How many of `available` nodes a round samples: max(floor(available · fraction), min). */
export function sampleSize(available: number, fraction: number, minNodes: number): number {
  return Math.max(Math.floor(available * fraction), minNodes);
}

/**
 * Choose the nodes for a train (default) or evaluate round, uniformly without replacement.
 * Throws UNAVAILABLE when fewer than minAvailableNodes are available or fewer than the sample
 * size; INVALID_ARGUMENT on duplicate ids. Evaluation with fractionEvaluate 0 returns [].
 */
export function sampleNodes<T>(
  nodeIds: readonly T[],
  config: FedAvgConfig,
  rng: Rng = Math.random,
  phase: 'train' | 'evaluate' = 'train',
): T[] {
  const available = nodeIds.length;
  if (new Set(nodeIds).size !== available) throw invalid('The node ids contain duplicates');
  if (phase === 'evaluate' && config.fractionEvaluate === 0) return [];
  const [fraction, minNodes] =
    phase === 'train'
      ? [config.fractionTrain, config.minTrainNodes]
      : [config.fractionEvaluate, config.minEvaluateNodes];
  const n = sampleSize(available, fraction, minNodes);
  const required = Math.max(config.minAvailableNodes, n);
  if (available < required) {
    throw new PollenError(
      'UNAVAILABLE',
      `Not enough nodes to ${phase}: ${available} available, ${required} required`,
      {
        hint: 'Wait for more SuperNodes to connect, or lower the minimum node settings of the strategy.',
        data: { available, required, phase },
      },
    );
  }
  // Partial Fisher–Yates: the first n slots end up a uniform sample.
  const pool = nodeIds.slice();
  for (let i = 0; i < n; i++) {
    const j = i + Math.min(available - i - 1, Math.floor(rng() * (available - i)));
    const t = pool[i] as T;
    pool[i] = pool[j] as T;
    pool[j] = t;
  }
  return pool.slice(0, n);
}

function key(
  options: FedAvgOptions,
  name: 'weightedByKey' | 'arrayRecordKey' | 'configRecordKey',
  fallback: string,
): string {
  const v = options[name] ?? fallback;
  if (typeof v !== 'string' || v === '') throw invalid(`${name} must be a non-empty string`);
  return v;
}

/**
 * Federated averaging. `start()` (from Strategy) runs the whole loop; the four steps below are
 * callable on their own, e.g. to aggregate replies collected another way.
 *
 * @example
 * ```ts
 * export default new ServerApp(async (grid, context) => {
 *   const strategy = new FedAvg({ fractionTrain: 0.5, minAvailableNodes: 2 });
 *   const { arrays } = await strategy.start({
 *     grid,
 *     initialArrays: ArrayRecord.fromArrays({ w: new Float32Array(100) }),
 *     numRounds: Number(context.runConfig['num-rounds']),
 *     trainConfig: new ConfigRecord({ 'local-epochs': 1 }),
 *   });
 * });
 * ```
 */
export class FedAvg extends Strategy implements FedAvgConfig {
  readonly fractionTrain: number;
  readonly fractionEvaluate: number;
  readonly minTrainNodes: number;
  readonly minEvaluateNodes: number;
  readonly minAvailableNodes: number;
  readonly weightedByKey: string;
  readonly arrayRecordKey: string;
  readonly configRecordKey: string;
  readonly #rng: Rng;
  /**
   * How float32 arrays are averaged: `float32`, Flower's arithmetic bit for bit (FedAvg, FedProx,
   * MultiKrum); the server optimizers, whose own step is float64, take `float64`.
   */
  protected readonly averagePrecision: Precision = 'float32';

  constructor(options: FedAvgOptions = {}) {
    super();
    // Only the options given: an explicit undefined keeps the default.
    const given = Object.entries(options).filter(([k, v]) => v !== undefined && k in FEDAVG_DEFAULTS);
    const c = fedAvgConfig(Object.fromEntries(given));
    this.fractionTrain = c.fractionTrain;
    this.fractionEvaluate = c.fractionEvaluate;
    this.minTrainNodes = c.minTrainNodes;
    this.minEvaluateNodes = c.minEvaluateNodes;
    this.minAvailableNodes = c.minAvailableNodes;
    this.weightedByKey = key(options, 'weightedByKey', 'num-examples');
    this.arrayRecordKey = key(options, 'arrayRecordKey', 'arrays');
    this.configRecordKey = key(options, 'configRecordKey', 'config');
    if (this.arrayRecordKey === this.configRecordKey)
      throw invalid(`arrayRecordKey and configRecordKey must differ, both are "${this.arrayRecordKey}"`);
    this.#rng = options.rng ?? Math.random;
  }

  #messages(
    type: MessageType,
    serverRound: number,
    arrays: ArrayRecord,
    config: ConfigRecord,
    nodeIds: readonly string[],
  ): Message[] {
    const nodes = sampleNodes(nodeIds, this, this.#rng, type === 'train' ? 'train' : 'evaluate');
    // One content for every node (the grid copies or deduplicates it); the caller's config is copied.
    const content = new RecordDict({
      [this.arrayRecordKey]: arrays,
      [this.configRecordKey]: new ConfigRecord(config).set('server-round', serverRound),
    });
    const groupId = String(serverRound);
    return nodes.map((dstNodeId) => Message.create({ dstNodeId, messageType: type, content, groupId }));
  }

  /**
   * Sample the train nodes among `nodeIds` and build one message each: the arrays and a copy of
   * `config` with `server-round`. UNAVAILABLE when too few nodes are available.
   */
  configureTrain(
    serverRound: number,
    arrays: ArrayRecord,
    config: ConfigRecord,
    nodeIds: readonly string[],
  ): Message[] {
    return this.#messages('train', serverRound, arrays, config, nodeIds);
  }

  /** As configureTrain, for evaluation; [] when fractionEvaluate is 0. */
  configureEvaluate(
    serverRound: number,
    arrays: ArrayRecord,
    config: ConfigRecord,
    nodeIds: readonly string[],
  ): Message[] {
    return this.#messages('evaluate', serverRound, arrays, config, nodeIds);
  }

  /**
   * Average the train replies that carry content (error replies are skipped): each must hold one
   * ArrayRecord and one MetricRecord with `weightedByKey` > 0. Arrays keep their dtype and shape
   * (integers are rounded, bool is the weighted majority: docs/sdk.md); the weight metric is left
   * out of the averaged metrics. Throws INVALID_ARGUMENT when no reply carries content or the
   * replies do not match. A reply holding NaN or Inf is left out and returned in `failures`
   * (UPDATE_NOT_FINITE).
   *
   * @example
   * ```ts
   * const replies = await grid.sendAndReceive(strategy.configureTrain(1, arrays, config, await grid.nodeIds()));
   * const { arrays: next, metrics } = strategy.aggregateTrain(1, replies);
   * ```
   */
  aggregateTrain(_serverRound: number, replies: Iterable<Message>): TrainAggregate {
    const all = trainReplies(replies, this.weightedByKey);
    const arrays = aggregateArrayRecords(all.contents, all.arrays, all.weights, this.averagePrecision);
    // Any NaN or Inf in a reply makes the average non-finite: checking the average (one pass over
    // the model, not K) finds it; only then are the replies scanned and averaged again without it.
    if (nonFiniteArray(arrays) === undefined) return this.trainAggregate(all, arrays);
    const { kept, failures } = dropNonFinite(all);
    return this.trainAggregate(
      kept,
      aggregateArrayRecords(kept.contents, kept.arrays, kept.weights, this.averagePrecision),
      failures,
    );
  }

  /**
   * The replies with content, checked (float32 and float64 arrays only), without those holding
   * NaN or Inf (returned as failures).
   */
  protected finiteTrainReplies(replies: Iterable<Message>): { kept: TrainReplies; failures: ReplyFailure[] } {
    const all = trainReplies(replies, this.weightedByKey);
    checkFloatArrays(all.arrays[0] as ArrayRecord, this.constructor.name);
    return dropNonFinite(all);
  }

  /** A TrainAggregate of `arrays` with the metrics of the replies `t` averaged by weight. */
  protected trainAggregate(
    t: TrainReplies,
    arrays: ArrayRecord,
    failures: ReplyFailure[] = [],
  ): TrainAggregate {
    return {
      arrays,
      ...this.#metricsOf(t.metrics, t.weights),
      ...(failures.length > 0 ? { failures } : {}),
    };
  }

  /** Average the evaluate replies' metrics by `weightedByKey` (error replies are skipped). */
  aggregateEvaluate(_serverRound: number, replies: Iterable<Message>): EvaluateAggregate {
    const ok = contentsOf(replies);
    const metrics = ok.map(replyMetrics);
    const weights = ok.map((r, k) => replyWeight(metrics[k] as MetricRecord, this.weightedByKey, r, k));
    return this.#metricsOf(metrics, weights);
  }

  #metricsOf(metrics: MetricRecord[], weights: number[]): EvaluateAggregate {
    return {
      metrics: new MetricRecord(aggregateMetricRecords(metrics, weights, this.weightedByKey)),
      numExamples: weights.reduce((s, w) => s + w, 0),
      numReplies: metrics.length,
    };
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(FedAvg);
