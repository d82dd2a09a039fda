/**
 * Per-round metrics: a ServerApp reports each round's aggregated metrics (loss, accuracy, …)
 * and the nodes that took part; the runtime adds the bytes moved and stores them with the run
 * (`pollen list --run-id ID`). On a grid that keeps no metrics this does nothing.
 */
import type { Grid } from './app.js';

/** One round's numbers as stored with the run. */
export interface RoundReport {
  round: number;
  metrics: Readonly<Record<string, number>>;
  nodeIds: readonly string[];
}

interface ReportingGrid extends Grid {
  reportRound(report: RoundReport): Promise<void>;
}

function canReport(grid: Grid): grid is ReportingGrid {
  return typeof (grid as Partial<ReportingGrid>).reportRound === 'function';
}

/**
 * Record one round's metrics with the run (duck-typed so a bundled SDK copy works too).
 * `Strategy.start()` calls it after every round; a ServerApp with its own loop calls it itself.
 *
 * @example
 * ```ts
 * await reportRound(grid, { round: 3, metrics: { 'train-loss': 0.31, accuracy: 0.92 }, nodeIds: ['1', '2'] });
 * ```
 */
export async function reportRound(grid: Grid, report: RoundReport): Promise<void> {
  if (canReport(grid)) await grid.reportRound(report);
}
