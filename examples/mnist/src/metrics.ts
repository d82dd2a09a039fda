/** Where per-round metrics go. One function, so the runtime can swap stdout for its store. */
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

export function emitRoundMetrics(m: RoundMetrics): void {
  process.stdout.write(`${METRICS_PREFIX}${JSON.stringify(m)}\n`);
}
