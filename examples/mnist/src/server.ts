/**
 * The ServerApp: FedAvg over `num-rounds` rounds. The server makes the initial model itself
 * from a fixed seed: every run starts from the same weights and no node is trusted to choose
 * them. Each round: train on sampled nodes, average, evaluate on the nodes' held-out splits and
 * on the server's own test digits, and emit one metrics line.
 */
import {
  ArrayRecord,
  ConfigRecord,
  type Grid,
  Message,
  type MessageType,
  RecordDict,
  ServerApp,
} from 'pollen/sdk';
import {
  aggregateEvaluate,
  aggregateTrain,
  type EvaluateReply,
  fedAvgConfig,
  sampleNodes,
  seededRng,
  type TrainReply,
} from 'pollen/strategies';
import { readRunConfig } from './config.js';
import { loadTestSet } from './data.js';
import { emitRoundMetrics } from './metrics.js';
import { createModel, evaluate, getArrays, initBackend, setArrays } from './model.js';

type Weights = Record<string, { data: Float32Array; shape: readonly number[] }>;

function toWeights(record: ArrayRecord): Weights {
  const out: Weights = {};
  for (const [name, e] of record) out[name] = { data: e.data as Float32Array, shape: e.shape };
  return out;
}

function toRecord(weights: Weights, arrays: Record<string, Float32Array>): ArrayRecord {
  const record = new ArrayRecord();
  for (const [name, { shape }] of Object.entries(weights))
    record.set(name, { dtype: 'float32', shape, data: arrays[name] as Float32Array });
  return record;
}

function numbers(record: Iterable<[string, unknown]>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of record) if (typeof v === 'number') out[k] = v;
  return out;
}

/** Send one message per node, return the replies that carry content (errors go to stderr). */
async function ask(grid: Grid, nodes: string[], type: MessageType, content: RecordDict) {
  const replies = await grid.sendAndReceive(
    nodes.map((dstNodeId) => Message.create({ dstNodeId, messageType: type, content })),
    { timeoutMs: 10 * 60_000 },
  );
  const ok = [];
  for (const r of replies) {
    if (r.hasContent()) ok.push(r.content);
    else process.stderr.write(`node ${r.metadata.srcNodeId} ${type} failed: ${r.error?.reason}\n`);
  }
  return ok;
}

function metricsOf(content: RecordDict): { numExamples: number; metrics: Record<string, number> } {
  const { 'num-examples': numExamples, ...metrics } = numbers(content.getMetricRecord('metrics') ?? []);
  return { numExamples: numExamples ?? 0, metrics };
}

export default new ServerApp(async (grid, context) => {
  const run = readRunConfig(context.runConfig);
  await initBackend();
  const model = createModel({ hiddenUnits: run.hiddenUnits, learningRate: run.learningRate, seed: run.seed });
  const testSet = loadTestSet(run.seed);
  const shapes = toWeights(getArrays(model));
  let arrays: Record<string, Float32Array> = Object.fromEntries(
    Object.entries(shapes).map(([n, w]) => [n, w.data]),
  );
  const strategy = fedAvgConfig({
    fractionTrain: run.fractionTrain,
    fractionEvaluate: run.fractionEvaluate,
    minTrainNodes: 1,
    minEvaluateNodes: 1,
    minAvailableNodes: 1,
  });
  const rng = seededRng(run.seed);
  try {
    for (let round = 1; round <= run.numRounds; round++) {
      const started = performance.now();
      const nodeIds = await grid.nodeIds();
      const trainNodes = sampleNodes(nodeIds, strategy, rng, 'train');
      const config = new ConfigRecord({
        'server-round': round,
        'local-epochs': run.localEpochs,
        'batch-size': run.batchSize,
        'learning-rate': run.learningRate,
      });
      const trained = await ask(
        grid,
        trainNodes,
        'train',
        new RecordDict({ arrays: toRecord(shapes, arrays), config }),
      );
      const replies: TrainReply[] = trained.map((c) => ({
        ...metricsOf(c),
        arrays: Object.fromEntries(
          [...(c.getArrayRecord('arrays') ?? [])].map(([n, e]) => [n, e.data as Float32Array]),
        ),
      }));
      if (replies.length === 0) throw new Error(`Round ${round}: no node returned a model`);
      const train = aggregateTrain(replies);
      arrays = train.arrays;

      const evalNodes = sampleNodes(nodeIds, strategy, rng, 'evaluate');
      const evaluated: EvaluateReply[] =
        evalNodes.length === 0
          ? []
          : (
              await ask(grid, evalNodes, 'evaluate', new RecordDict({ arrays: toRecord(shapes, arrays) }))
            ).map(metricsOf);
      const federated = evaluated.length > 0 ? aggregateEvaluate(evaluated).metrics : undefined;

      setArrays(model, toRecord(shapes, arrays));
      const central = evaluate(model, testSet);
      await emitRoundMetrics(grid, {
        round,
        loss: federated?.['loss'] ?? null,
        accuracy: federated?.['accuracy'] ?? null,
        nodes: trainNodes,
        trainLoss: train.metrics['train-loss'] ?? Number.NaN,
        trainAccuracy: train.metrics['train-accuracy'] ?? Number.NaN,
        centralizedLoss: central.loss,
        centralizedAccuracy: central.accuracy,
        seconds: (performance.now() - started) / 1000,
      });
    }
  } finally {
    model.dispose();
  }
});
