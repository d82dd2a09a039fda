/**
 * FedAvg (McMahan et al., 2017) as pure functions: sample nodes for a round, average the
 * replies' arrays weighted by their number of examples, and average their metrics the same way.
 *
 * The reply type is this module's own minimal shape (named Float32Arrays, `numExamples`,
 * numeric metrics), independent of the SDK's records: the SDK maps an ArrayRecord /
 * MetricRecord pair to it. Nothing here does I/O or touches a server module.
 */
import { PollenError } from '../errors.js';
import { type WeightedArrays, weightedAverage } from './aggregate.js';

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

/** A training reply: the node's arrays, how many examples it trained on, its metrics. */
export interface TrainReply {
  arrays: Record<string, Float32Array>;
  numExamples: number;
  metrics: Record<string, number>;
}

/** An evaluation reply: how many examples were evaluated and the metrics (e.g. loss, accuracy). */
export interface EvaluateReply {
  numExamples: number;
  metrics: Record<string, number>;
}

export interface AggregatedTrain {
  arrays: Record<string, Float32Array>;
  metrics: Record<string, number>;
  /** Total examples over the replies. */
  numExamples: number;
  numReplies: number;
}

export interface AggregatedEvaluate {
  metrics: Record<string, number>;
  numExamples: number;
  numReplies: number;
}

/** A source of uniform numbers in [0, 1), like Math.random. */
export type Rng = () => number;

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

/** A small seeded generator (mulberry32) for reproducible sampling in tests and simulations. */
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

function checkNumExamples(replies: readonly { numExamples: number }[]): void {
  if (replies.length === 0) throw invalid('No replies to aggregate', 'A round needs at least one reply.');
  replies.forEach((r, k) => {
    const n = r.numExamples;
    if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0) {
      throw invalid(
        `Reply ${k} reports numExamples = ${String(n)}: it must be finite and > 0`,
        'A node that trained or evaluated on no examples must not send a reply to be averaged.',
      );
    }
  });
}

/**
 * Weighted average of the metrics by numExamples. A metric missing from some replies is
 * averaged over the replies that report it. A non-finite metric value is refused.
 */
export function aggregateMetrics(
  replies: readonly { numExamples: number; metrics: Record<string, number> }[],
): Record<string, number> {
  const sums = new Map<string, { sum: number; weight: number }>();
  replies.forEach((r, k) => {
    for (const [name, value] of Object.entries(r.metrics)) {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        throw invalid(`Reply ${k} metric "${name}" is ${String(value)}: metrics must be finite numbers`);
      }
      const s = sums.get(name) ?? { sum: 0, weight: 0 };
      s.sum += value * r.numExamples;
      s.weight += r.numExamples;
      sums.set(name, s);
    }
  });
  const out: Record<string, number> = {};
  for (const [name, { sum, weight }] of sums) out[name] = sum / weight;
  return out;
}

/** FedAvg of training replies: arrays and metrics weighted by numExamples. */
export function aggregateTrain(replies: readonly TrainReply[]): AggregatedTrain {
  checkNumExamples(replies);
  const names = Object.keys((replies[0] as TrainReply).arrays);
  const updates: WeightedArrays[] = replies.map((r, k) => {
    const keys = Object.keys(r.arrays);
    if (keys.length !== names.length || names.some((n) => !(n in r.arrays))) {
      throw invalid(
        `Reply ${k} has arrays [${keys.join(', ')}], reply 0 has [${names.join(', ')}]`,
        'Every node must send the same named arrays.',
      );
    }
    return { arrays: names.map((n) => r.arrays[n] as Float32Array), weight: r.numExamples };
  });
  const averaged = weightedAverage(updates);
  const arrays: Record<string, Float32Array> = {};
  names.forEach((n, l) => {
    arrays[n] = averaged[l] as Float32Array;
  });
  return {
    arrays,
    metrics: aggregateMetrics(replies),
    numExamples: replies.reduce((s, r) => s + r.numExamples, 0),
    numReplies: replies.length,
  };
}

/** FedAvg of evaluation replies: metrics weighted by numExamples. */
export function aggregateEvaluate(replies: readonly EvaluateReply[]): AggregatedEvaluate {
  checkNumExamples(replies);
  return {
    metrics: aggregateMetrics(replies),
    numExamples: replies.reduce((s, r) => s + r.numExamples, 0),
    numReplies: replies.length,
  };
}

/** The config sent to each training node (a ConfigRecord's content). */
export function configureTrain(_config: FedAvgConfig, serverRound: number): Record<string, number> {
  return { serverRound };
}
