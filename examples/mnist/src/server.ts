/**
 * The ServerApp: the run config's `strategy` (FedAvg unless it names another of the catalogue,
 * with its settings under Flower's names: `eta`, `num-malicious-nodes`, …) over `num-rounds` rounds. The server makes the initial model itself
 * from a fixed seed: every run starts from the same weights and no node is trusted to choose
 * them. The strategy runs the rounds (train on sampled nodes, average, evaluate on the nodes'
 * held-out splits) and reports each one with the run; `evaluateFn` adds the server's own test
 * digits and `onRound` prints one metrics line. The final model is saved as the run's artefact
 * `final_model.npz` (NumPy's format): `pollen pull RUN_ID` downloads it.
 */
import { ConfigRecord, MetricRecord, ServerApp } from 'pollen/sdk';
import { seededRng, strategyFromRunConfig } from 'pollen/strategies';
import { readRunConfig } from './config.js';
import { loadTestSet } from './data.js';
import { printRound } from './metrics.js';
import { createModel, evaluate, getArrays, initBackend, setArrays } from './model.js';

export default new ServerApp(async (grid, context) => {
  const run = readRunConfig(context.runConfig);
  await initBackend();
  const model = createModel({ hiddenUnits: run.hiddenUnits, learningRate: run.learningRate, seed: run.seed });
  const testSet = loadTestSet(run.seed);
  // Any node count works by default; the run config may ask for more (`min-train-nodes`).
  const strategy = strategyFromRunConfig(run.strategy, context.runConfig, {
    minTrainNodes: 1,
    minEvaluateNodes: 1,
    minAvailableNodes: 1,
    rng: seededRng(run.seed),
  });
  try {
    const result = await strategy.start({
      grid,
      initialArrays: getArrays(model),
      numRounds: run.numRounds,
      timeoutMs: 10 * 60_000,
      trainConfig: new ConfigRecord({
        'local-epochs': run.localEpochs,
        'batch-size': run.batchSize,
        'learning-rate': run.learningRate,
      }),
      // Centralized evaluation on test digits that no node holds (round 0: the initial model).
      evaluateFn: (_round, arrays) => {
        setArrays(model, arrays);
        const { loss, accuracy } = evaluate(model, testSet);
        const metrics = { 'centralized-loss': loss, 'centralized-accuracy': accuracy };
        return new MetricRecord(Object.entries(metrics).filter(([, v]) => Number.isFinite(v)));
      },
      onRound: printRound,
    });
    // Into the run's artefact store on the SuperLink, never the app folder (read-only there).
    await context.artefacts.save('final_model.npz', result.arrays);
  } finally {
    model.dispose();
  }
});
