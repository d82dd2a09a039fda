#!/usr/bin/env node
/**
 * The app process: `node runner.js serverapp|clientapp`, started by the SuperLink (one per run)
 * or a SuperNode (one per run on that node). It loads the app from an unpacked bundle and talks
 * to its parent over the loopback AppIo API with the per-run token in its environment:
 * POLLEN_APPIO_URL, POLLEN_APP_TOKEN, POLLEN_RUN_ID, POLLEN_APP_PATH (and POLLEN_APP_REF for a built-in
 * ServerApp), and its resources in POLLEN_CPUS / POLLEN_GPUS (the context's `resources`).
 */
import { resourcesFromEnv } from '../sdk/context.js';
import { runClientApp } from './clientapp-runner.js';
import { runServerApp } from './serverapp-runner.js';

function env(name: string): string {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`${name} is not set: this program is started by a SuperLink or a SuperNode\n`);
    process.exit(2);
  }
  return v;
}

/** The node's POLLEN_CPUS / POLLEN_GPUS; a malformed value stops the app before it loads. */
function resources() {
  try {
    return resourcesFromEnv(process.env);
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  }
}

const kind = process.argv[2];
const options = {
  url: env('POLLEN_APPIO_URL'),
  token: env('POLLEN_APP_TOKEN'),
  runId: env('POLLEN_RUN_ID'),
  appPath: env('POLLEN_APP_PATH'),
  // A built-in ServerApp (`pollen:FedAvg`): POLLEN_APP_PATH is then the bundle folder.
  ...(process.env.POLLEN_APP_REF && { appRef: process.env.POLLEN_APP_REF }),
  resources: resources(),
};
// Tokens are for this process only; keep them from anything the app might spawn.
delete process.env.POLLEN_APP_TOKEN;

const main = kind === 'serverapp' ? runServerApp : kind === 'clientapp' ? runClientApp : undefined;
if (!main) {
  process.stderr.write('usage: runner.js serverapp|clientapp\n');
  process.exit(2);
}
main(options).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
