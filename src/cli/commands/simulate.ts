import { type Command, Option } from 'commander';
import { MAX_VIRTUAL_NODES } from '../../apps/virtual-nodes.js';
import { action, lazy } from '../command.js';
import type { SimulateOptions } from '../simulate/simulate.js';

const simulateApp = lazy(() => import('../simulate/simulate.js'), 'simulateApp');

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerSimulate(program: Command): void {
  program
    .command('simulate [APP_DIR]')
    .description('run an app on virtual nodes in this process: no network, certificates or node processes')
    .option('-n, --nodes <n>', `virtual nodes, 1 to ${MAX_VIRTUAL_NODES}`, '3')
    .option('-r, --rounds <r>', 'rounds: sets the run config num-rounds (the app must declare it)')
    .option('--run-config <k=v>', 'override the app default run config (repeatable)', collect, [])
    .option(
      '--node-config <k=v>',
      'node config for every virtual node, e.g. data-path=/data (repeatable)',
      collect,
      [],
    )
    .option('-o, --output <dir>', "where the ServerApp's artefacts are written (default: ./RUN_ID)")
    .addOption(
      new Option(
        '--python <path>',
        'Python apps: the interpreter of the ClientApps (default: the first of POLLEN_PYTHON, python3, /usr/bin/python3 that has what the app requires)',
      ).env('POLLEN_PYTHON'),
    )
    .addHelpText(
      'after',
      `
The app is built as pollen build builds it and loaded in this process. Virtual node p of N gets
the node config partition-id=p and num-partitions=N, as a site operator sets them on a real
SuperNode, and a node id that sorts in partition order. The ServerApp and ClientApp run
unchanged; strategies aggregate replies in node order, so a seeded app ends with the same model
as on a federation whose sites hold the same partitions in node-id order. Each round's metrics are shown as it
ends; the result holds every round and the final metrics. What the ServerApp saves with
context.artefacts.save is written into --output, as pollen pull writes a run's artefacts.
A Python app (pyproject.toml) runs its ClientApp in one process per virtual node, with the first
interpreter that has what it requires, and its own Python ServerApp (if it names one rather than
pollen:FedAvg or pollen:FedProx) in one more process, talking to a ServerAppIo over the nodes.
Limits: docs/simulation.md.

Examples:
  pollen simulate                                  # the app in this folder, 3 virtual nodes
  pollen simulate examples/mnist --nodes 5 --rounds 2 --run-config partitioning=non-iid
  pollen simulate my-app --json                    # one JSON document; app output on stderr
  pollen simulate my-app -o results                # the final model in results/final_model.npz`,
    )
    .action(
      action<Omit<SimulateOptions, 'appDir'>>((o, out, [appDir = '.']) => simulateApp({ ...o, appDir }, out)),
    );
}
