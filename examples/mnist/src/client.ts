/**
 * The ClientApp: trains the global model on this node's partition and evaluates it on the
 * partition's held-out split. Node config: `partition-id`, `num-partitions`, optional
 * `data-path` (a folder with 0.json … 9.json in the `mnist` package's format).
 */
import { ClientApp, type ConfigRecord, type Context, MetricRecord, RecordDict } from 'pollen/sdk';
import { seededRng } from 'pollen/strategies';
import { readRunConfig } from './config.js';
import { loadPartition } from './data.js';
import { createModel, evaluate, fit, getArrays, initBackend, setArrays } from './model.js';

function nodeData(context: Context) {
  const run = readRunConfig(context.runConfig);
  const n = context.nodeConfig;
  const dataPath = n['data-path'];
  return loadPartition({
    partitionId: Number(n['partition-id'] ?? 0),
    numPartitions: Number(n['num-partitions'] ?? 1),
    partitioning: run.partitioning,
    seed: run.seed,
    ...(typeof dataPath === 'string' && { dataPath }),
  });
}

/** A value the server sent in the message's "config" record, else the run config's. */
function setting(config: ConfigRecord | undefined, key: string, fallback: number): number {
  const v = config?.get(key);
  return typeof v === 'number' ? v : fallback;
}

export default new ClientApp({
  async train(message, context) {
    await initBackend();
    const run = readRunConfig(context.runConfig);
    const config = message.content.getConfigRecord('config');
    const arrays = message.content.getArrayRecord('arrays');
    if (arrays === undefined) throw new Error('The train message carries no "arrays" record');
    const { train } = nodeData(context);
    const model = createModel({
      hiddenUnits: run.hiddenUnits,
      learningRate: setting(config, 'learning-rate', run.learningRate),
    });
    try {
      setArrays(model, arrays);
      const round = setting(config, 'server-round', 0);
      const result = await fit(model, train, {
        epochs: setting(config, 'local-epochs', run.localEpochs),
        batchSize: setting(config, 'batch-size', run.batchSize),
        // A different but reproducible order per node and round.
        rng: seededRng(run.seed * 1_000_003 + round * 7919 + Number(context.nodeConfig['partition-id'] ?? 0)),
      });
      return new RecordDict({
        arrays: getArrays(model),
        metrics: new MetricRecord({
          'num-examples': train.count,
          'train-loss': result.loss,
          'train-accuracy': result.accuracy,
        }),
      });
    } finally {
      model.dispose();
    }
  },

  async evaluate(message, context) {
    await initBackend();
    const run = readRunConfig(context.runConfig);
    const arrays = message.content.getArrayRecord('arrays');
    if (arrays === undefined) throw new Error('The evaluate message carries no "arrays" record');
    const { evaluate: heldOut } = nodeData(context);
    const model = createModel({ hiddenUnits: run.hiddenUnits, learningRate: run.learningRate });
    try {
      setArrays(model, arrays);
      const { loss, accuracy } = evaluate(model, heldOut);
      return new RecordDict({
        metrics: new MetricRecord({ 'num-examples': heldOut.count, loss, accuracy }),
      });
    } finally {
      model.dispose();
    }
  },
});
