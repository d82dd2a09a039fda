/**
 * Starts one ServerApp process per run and follows it: pending → starting → running → finished.
 * The process gets a fresh per-run token for ServerAppIo (only its SHA-256 is stored); its
 * output lines become the run's log. A process that exits without finishing its run fails the
 * run with the exit code and its last error line as the reason.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { appEnvironment, resourceVariables } from '../apps/app-env.js';
import { builtinServerAppName } from '../apps/builtin-names.js';
import { extractBundle } from '../apps/bundle.js';
import {
  defaultPython,
  pythonAppVariables,
  pythonRunnerArgs,
  RequirementChecks,
} from '../apps/python-env.js';
import { isPollenError, PollenError } from '../errors.js';
import { packageFile } from '../util/package-root.js';
import type { Link } from './link.js';

export const RUNNER = packageFile('dist', 'apps', 'runner.js');
const STOP_GRACE_MS = 5_000;

export interface LauncherOptions {
  link: Link;
  /** Where bundles are unpacked (by content hash). */
  appsDir: string;
  /** ServerAppIo base URL the processes call (loopback). */
  serverAppIoUrl: () => string;
  /** The interpreter of Python ServerApps (default: POLLEN_PYTHON, else `python3` on PATH). */
  python?: string;
}

export class RunLauncher {
  readonly #o: LauncherOptions;
  readonly #processes = new Map<string, ChildProcess>();
  readonly #requirements: RequirementChecks;
  #closing = false;

  constructor(o: LauncherOptions) {
    this.#o = o;
    this.#requirements = new RequirementChecks(o.python ?? defaultPython());
  }

  get active(): number {
    return this.#processes.size;
  }

  async start(runId: string): Promise<void> {
    const { link } = this.#o;
    await link.state.transitionRun(runId, 'starting');
    try {
      const run = await link.state.getRun(runId);
      if (!run) throw new PollenError('RUN_NOT_FOUND', `No run ${runId}`);
      const bundle = await extractBundle(await link.fabs.bytes(run.fabHash), this.#o.appsDir);
      const { manifest } = bundle;
      const python = manifest.runtime === 'python' && builtinServerAppName(manifest.serverapp) === undefined;
      // Refused before the ServerApp starts, with the names of what the interpreter lacks.
      if (python)
        await this.#requirements.require(manifest.requirements ?? [], `${manifest.name} ${manifest.version}`);
      const token = randomBytes(32).toString('base64url');
      await link.state.setRunToken(runId, token);
      const appIoUrl = this.#o.serverAppIoUrl();
      const [command, args, env] = python
        ? [
            this.#requirements.python,
            pythonRunnerArgs('serverapp'),
            {
              ...pythonAppVariables({
                appIoUrl,
                runId,
                token,
                ref: manifest.serverapp,
                bundleDir: bundle.dir,
              }),
              ...resourceVariables(undefined, []),
            },
          ]
        : [
            process.execPath,
            [RUNNER, 'serverapp'],
            {
              POLLEN_APPIO_URL: appIoUrl,
              POLLEN_RUN_ID: runId,
              POLLEN_APP_TOKEN: token,
              // A built-in ServerApp (pollen:FedAvg) reads its initial arrays from the bundle folder.
              ...(manifest.runtime === 'python'
                ? { POLLEN_APP_PATH: bundle.dir, POLLEN_APP_REF: manifest.serverapp }
                : { POLLEN_APP_PATH: bundle.serverappPath }),
            },
          ];
      const child = spawn(command, args, {
        cwd: bundle.dir,
        env: appEnvironment(env),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.#processes.set(runId, child);
      child.once('error', (e) => {
        this.#processes.delete(runId);
        this.finish(runId, 'failed', `The ServerApp did not start (${command}): ${e.message}`, true).catch(
          () => {},
        );
      });
      let lastError = '';
      const follow = (stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr'): void => {
        const lines = createInterface({ input: stream });
        lines.on('line', (text) => {
          if (name === 'stderr' && text.trim()) lastError = text.trim();
          link.state.appendLogs(runId, [{ stream: name, text }]).catch(() => {});
        });
      };
      follow(child.stdout!, 'stdout');
      follow(child.stderr!, 'stderr');
      child.once('exit', (code, signal) => {
        this.#processes.delete(runId);
        if (this.#closing) return;
        const why = signal ? `signal ${signal}` : `exit code ${code}`;
        this.finish(
          runId,
          'failed',
          `The ServerApp exited (${why})${lastError ? `: ${lastError}` : ''}`,
          true,
        ).catch(() => {});
      });
      await link.state.transitionRun(runId, 'running');
      link.log.info({ runId, app: bundle.manifest.name, hash: run.fabHash }, 'run started');
    } catch (e) {
      const reason = isPollenError(e) ? `${e.code}: ${e.message}` : String(e);
      await this.finish(runId, 'failed', `The run could not start: ${reason}`).catch(() => {});
      // e.g. stopped while starting: finish() saw it finished already, so end the process here.
      this.#kill(runId);
      throw e;
    }
  }

  /** Mark a run finished (once) and stop its process; a later finish of the same run is ignored. */
  async finish(
    runId: string,
    subStatus: 'completed' | 'failed' | 'stopped',
    reason = '',
    exited = false,
  ): Promise<void> {
    const { link } = this.#o;
    const run = await link.state.getRun(runId);
    if (!run || run.status === 'finished') return;
    await link.state.transitionRun(runId, 'finished', { subStatus, reason });
    await link.state.appendLogs(runId, [
      { stream: 'system', text: `run ${subStatus}${reason ? `: ${reason}` : ''}` },
    ]);
    link.log.info({ runId, subStatus, reason }, 'run finished');
    link.events.runFinished(subStatus);
    link.replies.notify(runId);
    if (!exited) this.#kill(runId);
    await link.state.deleteRunMessages(runId).catch(() => {});
    await link
      .runFinished(runId)
      .catch((e) => link.log.warn({ err: e, runId }, 'dropping run chunks failed'));
  }

  #kill(runId: string): void {
    const child = this.#processes.get(runId);
    if (!child) return;
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS).unref();
  }

  /** After a restart: runs that were starting or running lost their ServerApp and fail cleanly. */
  async recover(): Promise<void> {
    for (const run of await this.#o.link.state.unfinishedRuns()) {
      if (run.status === 'pending') {
        await this.start(run.runId).catch(() => {});
        continue;
      }
      await this.finish(
        run.runId,
        'failed',
        'The SuperLink restarted while the run was in progress; start it again',
      );
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    const waits = [...this.#processes.values()].map(
      (child) => new Promise<void>((resolve) => child.once('exit', () => resolve())),
    );
    for (const runId of [...this.#processes.keys()]) this.#kill(runId);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(waits),
      new Promise((r) => {
        timer = setTimeout(r, STOP_GRACE_MS + 1000);
      }),
    ]);
    clearTimeout(timer);
  }
}
