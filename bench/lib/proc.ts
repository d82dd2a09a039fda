import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Child processes for benches: timed whole-process runs and long-running services. */

/** A free TCP port on 127.0.0.1 (for programs that cannot listen on port 0). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

/** The environment for children: ours, without POLLEN_* variables that would change what is measured. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('POLLEN_')) env[k] = v;
  return { ...env, NO_COLOR: '1', ...extra };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  wallMs: number;
  stdout: string;
  stderr: string;
}

/** Run a command to completion and time it from spawn to exit; killed after `timeoutMs`. */
export function run(
  command: string,
  args: string[],
  o: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(command, args, {
      cwd: o.cwd,
      env: o.env ?? cleanEnv(),
      stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    if (o.input !== undefined) child.stdin!.end(o.input);
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        wallMs: performance.now() - t0,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** Like `run`, but a non-zero exit is an error that quotes the command's stderr. */
export async function runOk(
  command: string,
  args: string[],
  o: Parameters<typeof run>[2] = {},
): Promise<RunResult> {
  const r = await run(command, args, o);
  if (r.code !== 0)
    throw new Error(
      `${command} ${args.join(' ')} exited with ${r.code ?? r.signal}: ${(r.stderr || r.stdout).trim().slice(-2000)}`,
    );
  return r;
}

/**
 * User + system CPU time in milliseconds of a live process and its live children (worker
 * processes of `cert-service --workers N`), from Linux /proc; undefined elsewhere.
 */
export function processCpuMs(pid: number): number | undefined {
  const own = statOf(pid);
  if (!own) return undefined;
  let total = own.cpuMs;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === pid) continue;
    const st = statOf(Number(entry));
    if (st?.ppid === pid) total += st.cpuMs;
  }
  return total;
}

function statOf(pid: number): { ppid: number; cpuMs: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return { ppid: Number(fields[1]), cpuMs: ((utime + stime) * 1000) / 100 }; // USER_HZ is 100
  } catch {
    return undefined;
  }
}

export interface Service<T> {
  child: ChildProcess;
  pid: number;
  /** What `ready` returned from the process's stdout. */
  info: T;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Start a long-running process and wait until `ready(stdoutSoFar)` returns a value (e.g. the
 * parsed `--json` document printed when a service listens). stderr goes to `stderrFile` (not a
 * pipe: a chatty logger must not make this process do work while we measure).
 */
export function startService<T>(
  command: string,
  args: string[],
  o: {
    ready: (stdout: string) => T | undefined;
    stderrFile: string;
    cwd?: string;
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number;
  },
): Promise<Service<T>> {
  const errFd = openSync(o.stderrFile, 'a');
  const child = spawn(command, args, {
    cwd: o.cwd,
    env: o.env ?? cleanEnv(),
    stdio: ['ignore', 'pipe', errFd],
  });
  closeSync(errFd);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.on('exit', (code, signal) => res({ code, signal })),
  );
  const stop = async (graceMs = 15_000) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const r = await exited;
      clearTimeout(timer);
      return r;
    }
    return exited;
  };
  return new Promise((resolve, reject) => {
    let stdout = '';
    let done = false;
    const fail = (why: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void stop(1000);
      let tail = '';
      try {
        tail = readFileSync(o.stderrFile, 'utf8').slice(-2000);
      } catch {}
      reject(new Error(`${command} ${args.join(' ')}: ${why}\n${stdout}${tail}`));
    };
    const timer = setTimeout(() => fail('not ready in time'), o.timeoutMs ?? 30_000);
    child.on('error', (e) => fail(e.message));
    void exited.then(({ code, signal }) => fail(`exited early (${code ?? signal})`));
    child.stdout!.on('data', (d: Buffer) => {
      if (done) return; // keep draining so the child never blocks on a full pipe
      stdout += d.toString('utf8');
      const info = o.ready(stdout);
      if (info === undefined) return;
      done = true;
      clearTimeout(timer);
      resolve({ child, pid: child.pid!, info, stop });
    });
  });
}

/** `ready` for commands that print one JSON document (`--json`): the document once it is complete. */
export function jsonDocument<T>(stdout: string): T | undefined {
  const text = stdout.trim();
  if (!text.endsWith('}')) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** A snapshot of the whole machine's CPU counters (Linux /proc/stat), for `machineBusySince`. */
export interface CpuSnapshot {
  busy: number;
  total: number;
}

export function machineCpu(): CpuSnapshot | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const busy = user! + nice! + system! + irq! + softirq! + steal!;
    return { busy, total: busy + idle! + iowait! };
  } catch {
    return undefined;
  }
}

/**
 * How busy the whole machine was since `from`, in percent of one core (200 = both of two
 * cores). Subtract what we know we used to see what other processes took.
 */
export function machineBusySince(from: CpuSnapshot | undefined, cores: number): number | undefined {
  const to = machineCpu();
  if (!from || !to || to.total === from.total) return undefined;
  return (100 * cores * (to.busy - from.busy)) / (to.total - from.total);
}
