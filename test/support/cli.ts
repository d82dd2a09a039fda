import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';

export const POLLEN_BIN = resolve(import.meta.dirname, '../../bin/pollen.js');

/** Build the CLI into dist/ (`npm run build`: tsc, then the bundle) unless dist/`file` is there. */
export function ensureBuilt(file: string): void {
  const root = resolve(import.meta.dirname, '../..');
  if (existsSync(join(root, 'dist', file))) return;
  const b = spawnSync('npm', ['run', 'build'], { cwd: root, encoding: 'utf8' });
  if (b.status !== 0 || !existsSync(join(root, 'dist', file)))
    throw new Error(`build failed: ${b.stdout}${b.stderr}`);
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (for --json runs). */
  json: <T = Record<string, unknown>>() => T;
}

/** Run the built CLI as a real process. */
export function pollen(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {},
): CliResult {
  const r = spawnSync(process.execPath, [POLLEN_BIN, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
    input: opts.input,
    encoding: 'utf8',
  });
  return {
    code: r.status ?? -1,
    stdout: r.stdout,
    stderr: r.stderr,
    json: <T>() => JSON.parse(r.stdout) as T,
  };
}

/** Same, without blocking the event loop (needed when the test also serves requests). */
export function pollenAsync(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [POLLEN_BIN, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, NO_COLOR: '1', ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) =>
      res({ code: code ?? -1, stdout, stderr, json: <T>() => JSON.parse(stdout) as T }),
    );
  });
}

let inProcessQueue: Promise<unknown> = Promise.resolve();

/**
 * Run the CLI in this process, from source (no build, no process start: ~100× faster than a
 * spawn). `env` replaces the environment for the call as a spawned process's would (`clean`:
 * start from PATH only), `cwd` its working folder, `input` its standard input. Calls queue one
 * after another, since environment and folder are process-wide. Not for commands that own the
 * process (services waiting for signals, `--workers`): keep those as real processes. `onStderr`
 * sees standard error as it is written (progress of a command that waits).
 */
export function pollenInProcess(
  args: string[],
  opts: {
    cwd?: string;
    env?: NodeJS.ProcessEnv;
    input?: string;
    clean?: boolean;
    onStderr?: (text: string) => void;
  } = {},
): Promise<CliResult> {
  const run = async (): Promise<CliResult> => {
    const { main } = await import('../../src/cli/main.js');
    const collect = (onWrite?: (text: string) => void) => {
      const chunks: string[] = [];
      const stream = new Writable({
        write(chunk, _enc, done) {
          chunks.push(String(chunk));
          onWrite?.(String(chunk));
          done();
        },
      });
      return { stream, text: () => chunks.join('') };
    };
    const stdout = collect();
    const stderr = collect(opts.onStderr);
    const savedEnv = process.env;
    const savedCwd = process.cwd();
    process.env = {
      ...(opts.clean ? { PATH: savedEnv['PATH'] ?? '' } : savedEnv),
      NO_COLOR: '1',
      ...opts.env,
    };
    if (opts.cwd) process.chdir(opts.cwd);
    try {
      const code = await main(['node', 'pollen', ...args], {
        stdout: stdout.stream,
        stderr: stderr.stream,
        stdin: () => opts.input ?? '',
      });
      const out = stdout.text();
      return { code, stdout: out, stderr: stderr.text(), json: <T>() => JSON.parse(out) as T };
    } finally {
      process.env = savedEnv;
      process.chdir(savedCwd);
    }
  };
  const result = inProcessQueue.then(run, run);
  inProcessQueue = result.catch(() => undefined);
  return result;
}

export function tempDir(prefix = 'pollen-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function openssl(args: string[], input?: string): { code: number; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8', input });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}
