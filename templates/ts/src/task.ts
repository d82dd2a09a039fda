/**
 * What this app learns, and from which data: logistic regression on a synthetic two-class
 * dataset. Replace it with your own model and data; the ClientApp (client.ts) and the ServerApp
 * (server.ts) only call what this file exports.
 *
 * Every node makes the same dataset from the run's `seed` and keeps its partition: the examples
 * whose index modulo `num-partitions` is its `partition-id` (both in the node config, set by the
 * site operator, or by `pollen simulate` for its virtual nodes). A real site would load its own
 * data here instead, e.g. from a path in its node config.
 */
import { ArrayRecord, type UserConfig } from 'pollen/sdk';
import { seededRng } from 'pollen/strategies';

/** Features per example. */
export const NUM_FEATURES = 8;
/** Examples in the whole dataset, before it is partitioned. */
const NUM_EXAMPLES = 4000;
/** The share of each partition kept for evaluation. */
const EVAL_FRACTION = 0.2;

/** The run config this app reads (its defaults: package.json, "pollen" → "config"). */
export interface Settings {
  numRounds: number;
  minNodes: number;
  fractionTrain: number;
  fractionEvaluate: number;
  localEpochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
}

function number(config: UserConfig, key: string): number {
  const v = config[key];
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new Error(`Run config "${key}" must be a number, got ${String(v)}`);
  return v;
}

export function readSettings(config: UserConfig): Settings {
  return {
    numRounds: number(config, 'num-rounds'),
    minNodes: number(config, 'min-nodes'),
    fractionTrain: number(config, 'fraction-train'),
    fractionEvaluate: number(config, 'fraction-evaluate'),
    localEpochs: number(config, 'local-epochs'),
    batchSize: number(config, 'batch-size'),
    learningRate: number(config, 'learning-rate'),
    seed: number(config, 'seed'),
  };
}

/** Examples and their labels. */
export interface Dataset {
  /** Row-major: example i is x[i * NUM_FEATURES] … x[(i + 1) * NUM_FEATURES - 1]. */
  x: Float32Array;
  /** 0 or 1. */
  y: Float32Array;
  count: number;
}

/** A standard normal sample (Box–Muller). */
function gaussian(rng: () => number): number {
  const u = 1 - rng(); // in (0, 1]: never log(0)
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/** The whole dataset: features from N(0, 1), labels from a hidden linear model plus noise. */
function makeDataset(seed: number): Dataset {
  const rng = seededRng(seed);
  const truth = Array.from({ length: NUM_FEATURES + 1 }, () => gaussian(rng));
  const x = new Float32Array(NUM_EXAMPLES * NUM_FEATURES);
  const y = new Float32Array(NUM_EXAMPLES);
  for (let i = 0; i < NUM_EXAMPLES; i++) {
    let z = truth[NUM_FEATURES] as number;
    for (let j = 0; j < NUM_FEATURES; j++) {
      const v = gaussian(rng);
      x[i * NUM_FEATURES + j] = v;
      z += (truth[j] as number) * v;
    }
    y[i] = z + 0.5 * gaussian(rng) > 0 ? 1 : 0;
  }
  return { x, y, count: NUM_EXAMPLES };
}

function subset(data: Dataset, indices: readonly number[]): Dataset {
  const x = new Float32Array(indices.length * NUM_FEATURES);
  const y = new Float32Array(indices.length);
  indices.forEach((from, to) => {
    x.set(data.x.subarray(from * NUM_FEATURES, (from + 1) * NUM_FEATURES), to * NUM_FEATURES);
    y[to] = data.y[from] as number;
  });
  return { x, y, count: indices.length };
}

/** A node's partition of the dataset, split into training and evaluation examples. */
export function loadPartition(
  partitionId: number,
  numPartitions: number,
  seed: number,
): { train: Dataset; evaluate: Dataset } {
  if (!Number.isInteger(numPartitions) || numPartitions < 1)
    throw new Error(`Node config "num-partitions" must be an integer >= 1, got ${numPartitions}`);
  if (!Number.isInteger(partitionId) || partitionId < 0 || partitionId >= numPartitions)
    throw new Error(
      `Node config "partition-id" must be an integer from 0 to ${numPartitions - 1}, got ${partitionId}`,
    );
  const all = makeDataset(seed);
  const mine: number[] = [];
  for (let i = partitionId; i < all.count; i += numPartitions) mine.push(i);
  const nEvaluate = Math.round(mine.length * EVAL_FRACTION);
  return {
    train: subset(all, mine.slice(0, mine.length - nEvaluate)),
    evaluate: subset(all, mine.slice(mine.length - nEvaluate)),
  };
}

/** The model as the arithmetic sees it (float64); it travels as float32 arrays. */
interface Parameters {
  weights: Float64Array;
  bias: number;
}

/** The global model before the first round: all zeros. */
export function initialModel(): ArrayRecord {
  return ArrayRecord.fromArrays({
    weights: new Float32Array(NUM_FEATURES),
    bias: new Float32Array(1),
  });
}

function parametersOf(model: ArrayRecord): Parameters {
  const weights = model.get('weights', 'float32');
  const bias = model.get('bias', 'float32');
  if (weights?.data.length !== NUM_FEATURES || bias?.data.length !== 1)
    throw new Error(`The model must hold float32 arrays "weights" [${NUM_FEATURES}] and "bias" [1]`);
  return { weights: Float64Array.from(weights.data), bias: bias.data[0] as number };
}

function recordOf(p: Parameters): ArrayRecord {
  return ArrayRecord.fromArrays({
    weights: Float32Array.from(p.weights),
    bias: Float32Array.of(p.bias),
  });
}

/** The predicted probability of class 1 for example i. */
function predict(p: Parameters, data: Dataset, i: number): number {
  let z = p.bias;
  for (let j = 0; j < NUM_FEATURES; j++)
    z += (p.weights[j] as number) * (data.x[i * NUM_FEATURES + j] as number);
  return 1 / (1 + Math.exp(-z));
}

/** Cross-entropy of one prediction, kept finite. */
function loss(probability: number, label: number): number {
  const q = Math.min(Math.max(probability, 1e-7), 1 - 1e-7);
  return -(label * Math.log(q) + (1 - label) * Math.log(1 - q));
}

export interface TrainOptions {
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Orders the examples of each epoch (seeded, so a run repeats exactly). */
  rng: () => number;
}

/** Mini-batch gradient descent from `model` on `data`: the new model and the last epoch's mean loss. */
export function train(
  model: ArrayRecord,
  data: Dataset,
  o: TrainOptions,
): { model: ArrayRecord; loss: number } {
  const p = parametersOf(model);
  const order = Array.from({ length: data.count }, (_, i) => i);
  let epochLoss = Number.NaN;
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(o.rng() * (i + 1));
      [order[i], order[j]] = [order[j] as number, order[i] as number];
    }
    let total = 0;
    for (let start = 0; start < order.length; start += o.batchSize) {
      const batch = order.slice(start, start + o.batchSize);
      const gradient = new Float64Array(NUM_FEATURES);
      let gradientBias = 0;
      for (const i of batch) {
        const probability = predict(p, data, i);
        const error = probability - (data.y[i] as number);
        total += loss(probability, data.y[i] as number);
        for (let j = 0; j < NUM_FEATURES; j++)
          gradient[j] = (gradient[j] as number) + error * (data.x[i * NUM_FEATURES + j] as number);
        gradientBias += error;
      }
      const step = o.learningRate / batch.length;
      for (let j = 0; j < NUM_FEATURES; j++)
        p.weights[j] = (p.weights[j] as number) - step * (gradient[j] as number);
      p.bias -= step * gradientBias;
    }
    epochLoss = total / data.count;
  }
  return { model: recordOf(p), loss: epochLoss };
}

/** Mean loss and accuracy of `model` on `data`. */
export function evaluate(model: ArrayRecord, data: Dataset): { loss: number; accuracy: number } {
  const p = parametersOf(model);
  let total = 0;
  let correct = 0;
  for (let i = 0; i < data.count; i++) {
    const probability = predict(p, data, i);
    total += loss(probability, data.y[i] as number);
    if ((probability >= 0.5 ? 1 : 0) === data.y[i]) correct++;
  }
  return { loss: total / data.count, accuracy: correct / data.count };
}

/** The model's values, one line of JSON: what the ServerApp prints when the run ends. */
export function describeModel(model: ArrayRecord): string {
  const p = parametersOf(model);
  return JSON.stringify({ weights: Array.from(p.weights), bias: [p.bias] });
}
