/**
 * One `POLLEN_METRICS {json}` line per round on stdout, in the run log. The strategy itself
 * reports each round's metrics with the run (`pollen list --run-id ID`).
 */
import type { MetricRecord } from 'pollen/sdk';
import type { RoundSummary } from 'pollen/strategies';

export interface RoundMetrics {
  round: number;
  /** Federated evaluation: loss and accuracy over the nodes' held-out splits, weighted by size. */
  loss: number | null;
  accuracy: number | null;
  /** Nodes that trained this round. */
  nodes: string[];
  trainLoss: number;
  trainAccuracy: number;
  /** Centralized evaluation on the server's test digits (no node holds them). */
  centralizedLoss: number;
  centralizedAccuracy: number;
  /** Wall time of the round (train, aggregate, evaluate). */
  seconds: number;
}

export const METRICS_PREFIX = 'POLLEN_METRICS ';

function metric(record: MetricRecord | undefined, key: string): number | null {
  const v = record?.get(key);
  return typeof v === 'number' ? v : null;
}

export function printRound(r: RoundSummary): void {
  const m: RoundMetrics = {
    round: r.serverRound,
    loss: metric(r.evaluateMetrics, 'loss'),
    accuracy: metric(r.evaluateMetrics, 'accuracy'),
    nodes: r.trainNodeIds,
    trainLoss: metric(r.trainMetrics, 'train-loss') ?? Number.NaN,
    trainAccuracy: metric(r.trainMetrics, 'train-accuracy') ?? Number.NaN,
    centralizedLoss: metric(r.serverEvaluateMetrics, 'centralized-loss') ?? Number.NaN,
    centralizedAccuracy: metric(r.serverEvaluateMetrics, 'centralized-accuracy') ?? Number.NaN,
    seconds: r.seconds,
  };
  process.stdout.write(`${METRICS_PREFIX}${JSON.stringify(m)}\n`);
}
