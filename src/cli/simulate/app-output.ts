/**
 * An app that runs in the CLI's own process (`pollen simulate`) writes where it likes: `console`,
 * `process.stdout.write`. While `fn` runs, both go line by line to `Output#appLine`, so with
 * --json stdout still carries exactly one document. The process's streams and the global console
 * are restored afterwards; only the CLI, which owns the process, may do this.
 */
import { Console } from 'node:console';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { Output } from '../output.js';

type Stream = 'stdout' | 'stderr';
type Write = NodeJS.WriteStream['write'];

export async function withAppOutput<T>(out: Output, fn: () => Promise<T>): Promise<T> {
  const pending: Record<Stream, string> = { stdout: '', stderr: '' };
  // Output itself may write to the patched process streams: those writes pass straight through.
  let forwarding = false;
  const take = (stream: Stream, text: string): void => {
    forwarding = true;
    try {
      const lines = (pending[stream] + text).split('\n');
      pending[stream] = lines.pop() as string;
      for (const line of lines) out.appLine(stream, line);
    } finally {
      forwarding = false;
    }
  };
  const streams = { stdout: process.stdout, stderr: process.stderr };
  const originals = { stdout: process.stdout.write, stderr: process.stderr.write };
  for (const name of ['stdout', 'stderr'] as const) {
    const stream = streams[name];
    const original = originals[name];
    stream.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
      if (forwarding) return (original as (...a: unknown[]) => boolean).call(stream, chunk, ...rest);
      const encoding = typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8';
      take(name, typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString(encoding));
      const done = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      done?.();
      return true;
    } as Write;
  }
  const sink = (name: Stream) =>
    new Writable({
      write(chunk, _encoding, done) {
        take(name, String(chunk));
        done();
      },
    });
  const globalConsole = globalThis.console;
  globalThis.console = new Console({ stdout: sink('stdout'), stderr: sink('stderr') });
  try {
    return await fn();
  } finally {
    globalThis.console = globalConsole;
    streams.stdout.write = originals.stdout;
    streams.stderr.write = originals.stderr;
    for (const name of ['stdout', 'stderr'] as const)
      if (pending[name] !== '') out.appLine(name, pending[name]);
  }
}

/**
 * A logger for the app processes of a simulation (Python ClientApps): each line they print goes
 * to `Output#appLine` as the in-process app's output does (stdout at info, stderr at warn and
 * above); the plumbing's own debug lines are dropped.
 */
export function appLogger(out: Output): Logger {
  const line =
    (stream: Stream) =>
    (_: unknown, text?: unknown): void => {
      if (typeof text === 'string') out.appLine(stream, text);
    };
  const logger: Record<string, unknown> = {
    info: line('stdout'),
    warn: line('stderr'),
    error: line('stderr'),
    fatal: line('stderr'),
    debug: () => {},
    trace: () => {},
    child: () => logger,
  };
  return logger as unknown as Logger;
}
