/**
 * Per-round metrics: a ServerApp reports each round's aggregated metrics (loss, accuracy, …)
 * and the nodes that took part; the runtime adds the bytes moved and stores them with the run
 * (`pollen list --run-id ID`). On a grid that keeps no metrics this does nothing.
 */
import type { Grid } from './app.js';

export interface RoundReport {
  round: number;
  metrics: Readonly<Record<string, number>>;
  nodeIds: readonly string[];
}

export interface ReportingGrid extends Grid {
  reportRound(report: RoundReport): Promise<void>;
}

export function canReport(grid: Grid): grid is ReportingGrid {
  return typeof (grid as Partial<ReportingGrid>).reportRound === 'function';
}

/** Record one round's metrics with the run (duck-typed so a bundled SDK copy works too). */
export async function reportRound(grid: Grid, report: RoundReport): Promise<void> {
  if (canReport(grid)) await grid.reportRound(report);
}
