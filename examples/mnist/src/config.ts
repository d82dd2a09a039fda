/**
 * The run config keys this app reads (defaults in package.json "pollen.config"); the strategy's
 * own (`fraction-train`, `eta`, …) are read by `strategyFromRunConfig`.
 */
import type { UserConfig } from 'pollen/sdk';
import type { Partitioning } from './data.js';

export interface RunConfig {
  /** The strategy of the catalogue, as Flower names it (`FedAvg`, `FedAdam`, `FedMedian`, `Krum`, …). */
  strategy: string;
  numRounds: number;
  localEpochs: number;
  batchSize: number;
  learningRate: number;
  hiddenUnits: number;
  partitioning: Partitioning;
  seed: number;
}

function num(config: UserConfig, key: string, fallback: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`Run config "${key}" must be a number`);
  return v;
}

export function readRunConfig(c: UserConfig): RunConfig {
  const partitioning = c['partitioning'] ?? 'iid';
  if (partitioning !== 'iid' && partitioning !== 'non-iid')
    throw new Error(`Run config "partitioning" must be "iid" or "non-iid", got ${String(partitioning)}`);
  const strategy = c['strategy'] ?? 'FedAvg';
  if (typeof strategy !== 'string') throw new Error('Run config "strategy" must be the name of a strategy');
  return {
    strategy,
    numRounds: num(c, 'num-rounds', 5),
    localEpochs: num(c, 'local-epochs', 1),
    batchSize: num(c, 'batch-size', 32),
    learningRate: num(c, 'learning-rate', 0.003),
    hiddenUnits: num(c, 'hidden-units', 128),
    partitioning,
    seed: num(c, 'seed', 42),
  };
}
