/**
 * Starts one ServerApp process per run and follows it: pending → starting → running → finished.
 * The process gets a fresh per-run token for ServerAppIo (only its SHA-256 is stored); its
 * output lines become the run's log. A process that exits without finishing its run fails the
 * run with the exit code and its last error line as the reason.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { appEnvironment } from '../apps/app-env.js';
import { extractBundle } from '../apps/bundle.js';
import { isPollenError, PollenError } from '../errors.js';
import type { Link } from './link.js';

export const RUNNER = fileURLToPath(new URL('../../dist/apps/runner.js', import.meta.url));
const STOP_GRACE_MS = 5_000;

export interface LauncherOptions {
  link: Link;
  /** Where bundles are unpacked (by content hash). */
  appsDir: string;
  /** ServerAppIo base URL the processes call (loopback). */
  serverAppIoUrl: () => string;
}

export class RunLauncher {
  readonly #o: LauncherOptions;
  readonly #processes = new Map<string, ChildProcess>();
  #closing = false;

  constructor(o: LauncherOptions) {
    this.#o = o;
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
      const bundle = await extractBundle(await link.fabBytes(run.fabHash), this.#o.appsDir);
      const token = randomBytes(32).toString('base64url');
      await link.state.setRunToken(runId, token);
      const child = spawn(process.execPath, [RUNNER, 'serverapp'], {
        cwd: bundle.dir,
        env: appEnvironment({
          POLLEN_APPIO_URL: this.#o.serverAppIoUrl(),
          POLLEN_RUN_ID: runId,
          POLLEN_APP_TOKEN: token,
          POLLEN_APP_PATH: bundle.serverappPath,
        }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.#processes.set(runId, child);
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
