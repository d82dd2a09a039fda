/**
 * The ServerApp: runs once per run, on the SuperLink (or in `pollen simulate`). FedAvg samples
 * the nodes, sends them the global model, averages their replies (in node order, so a seeded run
 * repeats exactly), has them evaluate it, and reports each round with the run.
 */
import { ServerApp } from 'pollen/sdk';
import { FedAvg, seededRng } from 'pollen/strategies';
import { describeModel, initialModel, readSettings } from './task.js';

export default new ServerApp(async (grid, context) => {
  const settings = readSettings(context.runConfig);
  const strategy = new FedAvg({
    fractionTrain: settings.fractionTrain,
    fractionEvaluate: settings.fractionEvaluate,
    minTrainNodes: settings.minNodes,
    minEvaluateNodes: settings.minNodes,
    minAvailableNodes: settings.minNodes,
    rng: seededRng(settings.seed),
  });
  const result = await strategy.start({
    grid,
    initialArrays: initialModel(),
    numRounds: settings.numRounds,
  });
  // The run log keeps this line (`pollen log RUN_ID`): the trained model, value by value.
  console.log(`final model ${describeModel(result.arrays)}`);
  // The run's output: `pollen pull RUN_ID` downloads it (`pollen simulate` writes it to --output).
  await context.artefacts.save('final_model.npz', result.arrays);
});
