/**
 * The names of the strategies in the catalogue, apart from the strategies themselves: what
 * building and submitting a run check (`pollen:FedAdam`) without loading any strategy code.
 */

/** The strategies a run config (or a built-in ServerApp, `pollen:NAME`) may name. */
export const STRATEGY_NAMES = [
  'FedAvg',
  'FedProx',
  'FedAdam',
  'FedYogi',
  'FedAdagrad',
  'FedAvgM',
  'FedMedian',
  'FedTrimmedAvg',
  'Krum',
  'MultiKrum',
  'Bulyan',
  'QFedAvg',
] as const;
export type StrategyName = (typeof STRATEGY_NAMES)[number];
