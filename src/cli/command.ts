import type { Command } from 'commander';
import { PollenError } from '../errors.js';
import { type Io, Output } from './output.js';

const ios = new WeakMap<Command, Io>();

/** Where the commands of this program write (main() sets it; the process's streams otherwise). */
export function setIo(program: Command, io: Io): void {
  ios.set(program, io);
}

function ioOf(cmd: Command): Io {
  let root = cmd;
  while (root.parent) root = root.parent;
  return ios.get(root) ?? { stdout: process.stdout, stderr: process.stderr };
}

/**
 * Wrap a command's action: build the Output from the global --json flag and let errors
 * propagate to main(), which maps them to exit codes.
 */
export function action<O>(fn: (opts: O, out: Output, args: string[], cmd: Command) => Promise<void>) {
  return async function (this: Command, ...raw: unknown[]): Promise<void> {
    const cmd = raw[raw.length - 1] as Command;
    const opts = cmd.optsWithGlobals() as O & { json?: boolean };
    const args = cmd.args;
    const io = ioOf(cmd);
    await fn(opts, new Output(Boolean(opts.json), io.stdout, io.stderr, io.stdin), args, cmd);
  };
}

/** Read an option, falling back to an environment variable (flags win). */
export function fromEnv(value: string | undefined, variable: string): string | undefined {
  return value ?? (process.env[variable] || undefined);
}

/** Wait for SIGINT or SIGTERM, then run `stop` (work in flight finishes first). */
export function untilSignal(stop: () => Promise<void>): Promise<void> {
  return new Promise<void>((res) => {
    const onSignal = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      void stop().then(res);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

export function requireCaPath(ca: string | undefined): string {
  const dir = fromEnv(ca, 'POLLEN_CA_PATH');
  if (!dir)
    throw new PollenError('CA_NOT_FOUND', 'CA path is required', {
      hint: 'Pass -c/--ca DIR or set POLLEN_CA_PATH to the folder made by `pollen cert init`.',
    });
  return dir;
}
