/**
 * The ClientApp: runs on every site (or virtual node of `pollen simulate`). `train` improves the
 * global model on the node's partition; `evaluate` scores it on the partition's held-out examples.
 */
import { ClientApp, type Context, MetricRecord, RecordDict } from 'pollen/sdk';
import { seededRng } from 'pollen/strategies';
import { evaluate, loadPartition, readSettings, train } from './task.js';

/** Which partition this node holds: `partition-id` and `num-partitions` of its node config. */
function partitionOf(context: Context): { id: number; count: number } {
  return {
    id: Number(context.nodeConfig['partition-id'] ?? 0),
    count: Number(context.nodeConfig['num-partitions'] ?? 1),
  };
}

function nodeData(context: Context) {
  const partition = partitionOf(context);
  return loadPartition(partition.id, partition.count, readSettings(context.runConfig).seed);
}

export default new ClientApp({
  train(message, context) {
    const settings = readSettings(context.runConfig);
    const model = message.content.getArrayRecord('arrays');
    if (model === undefined) throw new Error('The train message carries no "arrays" record');
    const round = Number(message.content.getConfigRecord('config')?.get('server-round') ?? 0);
    const { train: data } = nodeData(context);
    const result = train(model, data, {
      epochs: settings.localEpochs,
      batchSize: settings.batchSize,
      learningRate: settings.learningRate,
      // Seeded by the partition, not the node id: a simulation and a real run draw the same order.
      rng: seededRng(settings.seed * 1_000_003 + round * 7919 + partitionOf(context).id),
    });
    return new RecordDict({
      arrays: result.model,
      metrics: new MetricRecord({ 'num-examples': data.count, 'train-loss': result.loss }),
    });
  },

  evaluate(message, context) {
    const model = message.content.getArrayRecord('arrays');
    if (model === undefined) throw new Error('The evaluate message carries no "arrays" record');
    const { evaluate: data } = nodeData(context);
    const { loss, accuracy } = evaluate(model, data);
    return new RecordDict({
      metrics: new MetricRecord({ 'num-examples': data.count, loss, accuracy }),
    });
  },
});
