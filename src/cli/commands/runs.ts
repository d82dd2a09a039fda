import type { Command } from 'commander';
import { federationArg } from '../app-federation.js';
import { action, lazy } from '../command.js';

const listRuns = lazy(() => import('../runs/list.js'), 'listRuns');
const logRun = lazy(() => import('../runs/log.js'), 'logRun');
const pullArtefacts = lazy(() => import('../runs/pull.js'), 'pullArtefacts');
const runApp = lazy(() => import('../runs/run.js'), 'runApp');
const stopRun = lazy(() => import('../runs/stop.js'), 'stopRun');

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerRuns(program: Command): void {
  program
    .command('run [APP_DIR] [FEDERATION]')
    .description('build an app and start a run of it on a federation')
    .option('--run-config <k=v>', 'override the app default run config (repeatable)', collect, [])
    .option('--stream', 'follow the run: logs and per-round metrics until it finishes')
    .addHelpText(
      'after',
      `
Examples:
  pollen run examples/mnist local --run-config num-rounds=5 --stream
  pollen run . prod --run-config "learning-rate=0.05 local-epochs=2"
  pollen run . cancer-study --stream     # a federation on the default SuperLink

FEDERATION is one of your SuperLink connections (pollen config superlink list: that SuperLink and
the federation its entry names), or else a federation on the default connection (--superlink NAME
picks another); left out, the default connection and its federation. List, log, pull and stop
read it the same way.

The app is bundled with its dependencies (pollen build), pushed in content-addressed chunks
(only what the SuperLink lacks) and started as a ServerApp process on the SuperLink. Without
--stream the command prints the run id and returns; follow it with pollen log RUN_ID --stream.
Ctrl-C while following stops only the following: the run goes on, and the command prints how
to follow it again (pollen log) or stop it (pollen stop).`,
    )
    .action(
      action<{ runConfig: string[]; stream?: boolean }>((o, out, [appDir = '.', federation]) =>
        runApp({ ...o, appDir, federation }, out),
      ),
    );

  program
    .command('list [APP_DIR] [FEDERATION]')
    .alias('ls')
    .description('list runs, or show one run with its per-round metrics and artefacts (--run-id)')
    .option('--run-id <id>', 'show this run in detail')
    .addHelpText(
      'after',
      `
Examples:
  pollen list                          # runs on the default federation
  pollen ls prod --json
  pollen ls . prod                     # Flower's form: the app folder first
  pollen list --run-id 3f9c0a12b4d5e6f7  # status, per-round metrics and artefacts of one run`,
    )
    .action(
      action<{ runId?: string }>((o, out, [a, b]) =>
        listRuns({ ...o, federation: federationArg(a, b) }, out),
      ),
    );

  program
    .command('log <RUN_ID> [APP_DIR] [FEDERATION]')
    .description("print a run's log (ServerApp output and run events)")
    .option('--stream', 'keep following until the run finishes')
    .addHelpText(
      'after',
      `
Examples:
  pollen log 3f9c0a12b4d5e6f7
  pollen log 3f9c0a12b4d5e6f7 prod --stream   # follow; exits non-zero if the run fails or is stopped`,
    )
    .action(
      action<{ stream?: boolean }>((o, out, [runId, a, b]) =>
        logRun({ ...o, runId: runId!, federation: federationArg(a, b) }, out),
      ),
    );

  program
    .command('pull <RUN_ID> [APP_DIR] [FEDERATION]')
    .description("download a run's artefacts (what its ServerApp saved: final model, metrics, plots)")
    .option('-o, --output <dir>', 'the folder to write them into (default: ./RUN_ID)')
    .addHelpText(
      'after',
      `
Examples:
  pollen pull 3f9c0a12b4d5e6f7                  # into ./3f9c0a12b4d5e6f7/
  pollen pull 3f9c0a12b4d5e6f7 prod -o models --json

A ServerApp saves artefacts with context.artefacts.save(NAME, DATA); NAME may hold folders
(plots/loss.svg), created under the output folder. Every chunk and every file is checked
against its SHA-256 before it takes its name; a file that already holds the artefact is left
as it is. Files are written readable by their owner only (0600).`,
    )
    .action(
      action<{ output?: string }>((o, out, [runId, a, b]) =>
        pullArtefacts({ ...o, runId: runId!, federation: federationArg(a, b) }, out),
      ),
    );

  program
    .command('stop <RUN_ID> [APP_DIR] [FEDERATION]')
    .description('stop a run: its ServerApp process ends and nodes stop its ClientApps')
    .addHelpText(
      'after',
      `
Examples:
  pollen stop 3f9c0a12b4d5e6f7
  pollen stop 3f9c0a12b4d5e6f7 prod --json

A run that already finished cannot be stopped (RUN_STATE_CONFLICT, exit code 6).`,
    )
    .action(
      action<object>((o, out, [runId, a, b]) =>
        stopRun({ ...o, runId: runId!, federation: federationArg(a, b) }, out),
      ),
    );
}
