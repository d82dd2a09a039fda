/** Federated strategies: pure functions over updates, no I/O, no server imports. */
export {
  averageRange,
  normalizeWeights,
  SMALL_LAYER,
  type WeightedArrays,
  weightedAverage,
} from './aggregate.js';
export {
  type AggregatedEvaluate,
  type AggregatedTrain,
  aggregateEvaluate,
  aggregateMetrics,
  aggregateTrain,
  configureTrain,
  type EvaluateReply,
  FEDAVG_DEFAULTS,
  type FedAvgConfig,
  fedAvgConfig,
  type Rng,
  sampleNodes,
  sampleSize,
  seededRng,
  type TrainReply,
} from './fedavg.js';
export {
  configureTrain as configureFedProxTrain,
  type FedProxConfig,
  fedProxConfig,
  type Params,
  type ProximalTerm,
  proximalTerm,
} from './fedprox.js';
