/**
 * `pollen/strategies`: federated strategies over the SDK's records. `new FedAvg({...}).start({
 * grid, initialArrays, numRounds })` runs the whole loop; Strategy is the base to write others
 * on. The averaging kernels, sampling and option checks stay internal.
 */
export { FedAvg, type FedAvgOptions, type Rng, seededRng } from './fedavg.js';
export { FedProx, type FedProxOptions, type Params, type ProximalTerm, proximalTerm } from './fedprox.js';
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
