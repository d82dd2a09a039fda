/** The run config keys this app reads (defaults in package.json "pollen.config"). */
import type { UserConfig } from 'pollen/sdk';
import type { Partitioning } from './data.js';

export interface RunConfig {
  numRounds: number;
  fractionTrain: number;
  fractionEvaluate: number;
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
  return {
    numRounds: num(c, 'num-rounds', 5),
    fractionTrain: num(c, 'fraction-train', 1),
    fractionEvaluate: num(c, 'fraction-evaluate', 1),
    localEpochs: num(c, 'local-epochs', 1),
    batchSize: num(c, 'batch-size', 32),
    learningRate: num(c, 'learning-rate', 0.003),
    hiddenUnits: num(c, 'hidden-units', 128),
    partitioning,
    seed: num(c, 'seed', 42),
  };
}
