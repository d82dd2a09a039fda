import type { Command } from 'commander';
import { action, lazy } from '../command.js';
import { METRICS_ADDRESSES } from '../env-options.js';
import type { ReadyOptions } from '../ready/ready.js';

const ready = lazy(() => import('../ready/ready.js'), 'ready');

export function registerReady(program: Command): void {
  program
    .command('ready [ADDRESS]')
    .description(
      `wait until a SuperLink, SuperNode or Certificate Service is ready (GET http://ADDRESS/readyz answers 200; default ${METRICS_ADDRESSES.superlink})`,
    )
    .option('--timeout <seconds>', 'how long to wait before failing', '30')
    .addHelpText(
      'after',
      `
Examples:
  pollen ready                          # the SuperLink on this host (127.0.0.1:9095)
  pollen ready 127.0.0.1:9096 --timeout 60
  pollen ready 127.0.0.1:9097 --json    # the Certificate Service

ADDRESS is the component's --metrics-address. Exit codes: 0 ready; 7 not ready in time
(NOT_READY names the failing check) or nothing answering (UNAVAILABLE). Used by the systemd
units (ExecStartPost=) and the container HEALTHCHECK.`,
    )
    .action(
      action<ReadyOptions>((o, out, args) =>
        ready((args[0] as string | undefined) ?? METRICS_ADDRESSES.superlink, o, out),
      ),
    );
}
