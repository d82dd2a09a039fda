/**
 * `pollen/strategies`: federated strategies over the SDK's records, Flower's catalogue. `new
 * FedAvg({...}).start({ grid, initialArrays, numRounds })` runs the whole loop; each strategy's
 * `aggregateTrain` is its aggregation step alone; `strategyFromRunConfig` picks one by name from
 * the run config; Strategy is the base to write others on. The
 * averaging kernels, sampling and option checks stay internal. See docs/strategies.md.
 */
export { Bulyan, type BulyanOptions } from './bulyan.js';
export { FedAdagrad, type FedAdagradOptions } from './fedadagrad.js';
export { FedAdam } from './fedadam.js';
export { FedAvg, type FedAvgOptions, type Rng, seededRng } from './fedavg.js';
export { FedAvgM, type FedAvgMOptions } from './fedavgm.js';
export { FedMedian } from './fedmedian.js';
export { FedOpt, type FedOptOptions } from './fedopt.js';
export { FedProx, type FedProxOptions, type Params, type ProximalTerm, proximalTerm } from './fedprox.js';
export { FedTrimmedAvg, type FedTrimmedAvgOptions } from './fedtrimmedavg.js';
export { FedYogi } from './fedyogi.js';
export { type StrategyName, strategyFromRunConfig } from './from-run-config.js';
export { Krum, type KrumOptions } from './krum.js';
export { MultiKrum, type MultiKrumOptions } from './multikrum.js';
export { QFedAvg, type QFedAvgOptions } from './qfedavg.js';
export {
  type Clock,
  type EvaluateAggregate,
  type EvaluateFn,
  type ReplyFailure,
  type RoundSummary,
  type StartOptions,
  Strategy,
  type StrategyResult,
  type TrainAggregate,
} from './strategy.js';
