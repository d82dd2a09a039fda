/**
 * A run's ClientApp in its own process: `node RUNNER clientapp` in the unpacked bundle's folder,
 * with the ClientAppIo address, the run and its per-run token in a minimal environment (never the
 * node's credentials). Its output goes to the node's log, line by line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import { appEnvironment, resourceVariables } from '../apps/app-env.js';
import type { ExtractedBundle } from '../apps/bundle.js';
import { pythonAppVariables, pythonRunnerArgs } from '../apps/python-env.js';
import { PollenError } from '../errors.js';
import { FROM_SOURCE, ownScript, packageFile } from '../util/package-root.js';
import type { AppSlot } from './clientappio-service.js';

/** The app runner (apps/runner.ts) a SuperNode starts: `node [execArgv] script clientapp`. */
export interface RunnerEntry {
  script: string;
  /** Node options placed before the script, e.g. a loader. */
  execArgv?: readonly string[];
}

/**
 * The app runner of this Pollen: dist/apps/runner.js in a build (tsc's modules or the bundled
 * CLI); from source (tests, tsx) the TypeScript runner, through tsx's loader as `tsx` itself
 * would run it.
 */
export function defaultRunner(): RunnerEntry {
  const script = ownScript('apps/runner');
  if (!FROM_SOURCE) {
    if (existsSync(script)) return { script };
    throw new PollenError('FILE_NOT_FOUND', `No app runner at ${script}`, {
      hint: 'Build Pollen (npm run build), or give the SuperNode its runner.',
    });
  }
  let loader: string;
  try {
    loader = pathToFileURL(createRequire(packageFile('package.json')).resolve('tsx')).href;
  } catch (e) {
    throw new PollenError('FILE_NOT_FOUND', `No tsx to run ${script}`, {
      cause: e,
      hint: 'Build Pollen (npm run build), or give the SuperNode its runner.',
    });
  }
  return { script, execArgv: ['--import', loader] };
}

export interface ClientAppProcess {
  runner: RunnerEntry;
  /** The interpreter of Python apps (`--python`). */
  python: string;
  appIoUrl: string;
  slot: AppSlot;
  bundle: ExtractedBundle;
  /** The resources this run's app gets: CPUs of the node, GPUs given to the run. */
  cpu?: number;
  gpus: readonly number[];
  log: Logger;
}

/** The command of the run's ClientApp: the Node runner, or the site's Python with Pollen's SDK. */
function clientAppCommand(o: ClientAppProcess): {
  command: string;
  args: string[];
  env: Record<string, string>;
} {
  const { runId, token } = o.slot;
  const resources = resourceVariables(o.cpu, o.gpus);
  if (o.bundle.manifest.runtime === 'python')
    return {
      command: o.python,
      args: pythonRunnerArgs('clientapp'),
      env: {
        ...pythonAppVariables({
          appIoUrl: o.appIoUrl,
          runId,
          token,
          ref: o.bundle.manifest.clientapp,
          bundleDir: o.bundle.dir,
        }),
        // The chunks this node serves on ClientAppIo are verified already (its own cuts, or hashed
        // on the way into its store): the app need not hash each of them a second time.
        POLLEN_CHUNKS_VERIFIED: '1',
        ...resources,
      },
    };
  return {
    command: process.execPath,
    args: [...(o.runner.execArgv ?? []), o.runner.script, 'clientapp'],
    env: {
      POLLEN_APPIO_URL: o.appIoUrl,
      POLLEN_RUN_ID: runId,
      POLLEN_APP_TOKEN: token,
      POLLEN_APP_PATH: o.bundle.clientappPath,
      ...resources,
    },
  };
}

export function spawnClientApp(o: ClientAppProcess): ChildProcess {
  const { runId } = o.slot;
  const { command, args, env } = clientAppCommand(o);
  const child = spawn(command, args, {
    cwd: o.bundle.dir,
    env: appEnvironment(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A missing interpreter is an error event, not an exit: the node logs it and the slot's
  // 'exit' listener (run-slots.ts) tells the run; without a listener it would crash the node.
  child.once('error', (e) =>
    o.log.warn({ runId, app: 'clientapp', command, reason: e.message }, 'the ClientApp did not start'),
  );
  for (const [stream, level] of [
    [child.stdout!, 'info'],
    [child.stderr!, 'warn'],
  ] as const)
    createInterface({ input: stream }).on('line', (line) => o.log[level]({ runId, app: 'clientapp' }, line));
  return child;
}

/**
 * End an app that was told to shut down (it sees `shutdown` on its next pull): SIGTERM after 2 s,
 * SIGKILL after 7 s. Real timers, not the node's clock: they bound an operating-system process,
 * and hold nothing open (unref).
 */
export function endClientApp(child: ChildProcess): void {
  if (child.exitCode !== null) return;
  setTimeout(() => child.kill('SIGTERM'), 2_000).unref();
  setTimeout(() => child.kill('SIGKILL'), 7_000).unref();
}

/** Wait up to 2 s for the apps to exit by themselves, then make sure none outlives the node. */
export async function reapClientApps(apps: ChildProcess[]): Promise<void> {
  await Promise.race([
    Promise.all(apps.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r))))),
    new Promise((r) => setTimeout(r, 2_000).unref()),
  ]);
  for (const c of apps) if (c.exitCode === null) c.kill('SIGKILL');
}
