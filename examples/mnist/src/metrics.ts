/** Where per-round metrics go: one function, so the destination is easy to change. */
import { type Grid, reportRound } from 'pollen/sdk';

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

/** One JSON line on stdout, and the run's metrics store when the grid keeps one (the runtime's). */
export async function emitRoundMetrics(grid: Grid, m: RoundMetrics): Promise<void> {
  process.stdout.write(`${METRICS_PREFIX}${JSON.stringify(m)}\n`);
  const metrics: Record<string, number> = {};
  for (const [key, value] of Object.entries({
    loss: m.loss,
    accuracy: m.accuracy,
    'train-loss': m.trainLoss,
    'train-accuracy': m.trainAccuracy,
    'centralized-loss': m.centralizedLoss,
    'centralized-accuracy': m.centralizedAccuracy,
  }))
    if (typeof value === 'number' && Number.isFinite(value)) metrics[key] = value;
  await reportRound(grid, { round: m.round, metrics, nodeIds: m.nodes });
}
