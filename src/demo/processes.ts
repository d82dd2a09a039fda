/**
 * Child `pollen` processes for the demos: one-shot commands, and long-running services whose
 * first JSON document on stdout says they are ready. Every process is killed on cleanup.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { PollenError } from '../errors.js';
import { packageFile } from '../util/package-root.js';

export const BIN = packageFile('bin', 'pollen.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Service<T> {
  child: ChildProcess;
  ready: T;
}

export class Processes {
  readonly children = new Set<ChildProcess>();
  readonly env: NodeJS.ProcessEnv;
  readonly deadline: number;

  constructor(env: NodeJS.ProcessEnv, deadline: number) {
    // Every component of a demo opens its ops listener (/metrics, /readyz) on a free port: on
    // their default ports the sites on this one host would compete for 9096.
    this.env = { ...process.env, NO_COLOR: '1', POLLEN_METRICS_ADDRESS: '127.0.0.1:0', ...env };
    this.deadline = deadline;
  }

  /** `onLine` sees each line of stdout as it comes, `onErrLine` each line of stderr. */
  run(
    args: string[],
    env: NodeJS.ProcessEnv = {},
    onLine?: (line: string) => void,
    onErrLine?: (line: string) => void,
  ): Promise<RunResult> {
    return new Promise((res, rej) => {
      const child = spawn(process.execPath, [BIN, ...args], { env: { ...this.env, ...env } });
      this.children.add(child);
      let stdout = '';
      let stderr = '';
      const outLines = lineSplitter(onLine);
      const errLines = lineSplitter(onErrLine);
      child.stdout.on('data', (d) => {
        stdout += d;
        outLines(String(d));
      });
      child.stderr.on('data', (d) => {
        stderr += d;
        errLines(String(d));
      });
      const timer = setTimeout(() => child.kill('SIGTERM'), Math.max(1000, this.deadline - Date.now()));
      child.on('error', rej);
      child.on('close', (code) => {
        clearTimeout(timer);
        this.children.delete(child);
        res({ code: code ?? -1, stdout, stderr });
      });
    });
  }

  async must(args: string[], env?: NodeJS.ProcessEnv, onLine?: (line: string) => void): Promise<RunResult> {
    const res = await this.run(args, env, onLine);
    if (res.code !== 0)
      throw new PollenError('INTERNAL', `\`pollen ${args.join(' ')}\` failed (exit ${res.code})`, {
        detail: (res.stderr || res.stdout).slice(-4000),
      });
    return res;
  }

  /** Start a long-running command; resolves with the first JSON document it prints on stdout. */
  service<T>(
    args: string[],
    logFile: string,
    env: NodeJS.ProcessEnv = {},
    timeoutMs = 60_000,
  ): Promise<Service<T>> {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...this.env, ...env },
      stdio: ['ignore', 'pipe', openSync(logFile, 'a')],
    });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    let out = '';
    return new Promise((res, rej) => {
      const timer = setTimeout(
        () => {
          child.kill();
          rej(new PollenError('UNAVAILABLE', `\`pollen ${args[0]}\` did not start in time; see ${logFile}`));
        },
        Math.max(1000, Math.min(timeoutMs, this.deadline - Date.now())),
      );
      child.stdout!.on('data', (d) => {
        out += d;
        try {
          const ready = JSON.parse(out) as T;
          clearTimeout(timer);
          res({ child, ready });
        } catch {
          // not a whole document yet
        }
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        rej(new PollenError('UNAVAILABLE', `\`pollen ${args[0]}\` exited (${code}); see ${logFile}`));
      });
    });
  }

  /** Start a long-running command whose output goes to a log file (sites, in the demo). */
  background(args: string[], logFile: string, env: NodeJS.ProcessEnv = {}): ChildProcess {
    const fd = openSync(logFile, 'a');
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...this.env, ...env },
      stdio: ['ignore', fd, fd],
    });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Detach a service so it outlives us (--keep). */
  keep(child: ChildProcess): void {
    this.children.delete(child);
    child.stdout?.destroy();
    child.unref();
  }

  async stopAll(): Promise<void> {
    const waits = [...this.children].map(
      (c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r))),
    );
    for (const c of this.children) c.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const c of this.children) c.kill('SIGKILL');
    }, 8000);
    await Promise.all(waits);
    clearTimeout(timer);
  }
}

/** A Certificate Service on 127.0.0.1 (any free port) for a demo; resolves to its https URL. */
export async function startDemoCertService(
  px: Processes,
  o: { ca: string; workspace: string; apiKeyFile: string; policyFile: string; logFile: string },
): Promise<{ url: string; child: ChildProcess }> {
  const svc = await px.service<{ port: number }>(
    [
      'cert-service',
      '-c',
      o.ca,
      '-w',
      o.workspace,
      '--host',
      '127.0.0.1',
      '-p',
      '0',
      '--api-key-file',
      o.apiKeyFile,
    ]
      .concat(['--policy', o.policyFile, '--hostname', 'localhost', '--hostname', '127.0.0.1'])
      .concat(['--log-level', 'warn', '--json']),
    o.logFile,
    {},
    30_000,
  );
  return { url: `https://localhost:${svc.ready.port}`, child: svc.child };
}

/** Feed text as it comes; `onLine` gets each whole line. */
function lineSplitter(onLine?: (line: string) => void): (text: string) => void {
  let partial = '';
  return (text) => {
    if (!onLine) return;
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) onLine(l);
  };
}
