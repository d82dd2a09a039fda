import { Command } from 'commander';
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

/** The async functions a module exports, by name. */
type AsyncExports<M> = {
  [K in keyof M]: M[K] extends (...a: never[]) => Promise<unknown> ? K : never;
}[keyof M];

/**
 * A command's function, imported when the command runs: `lazy(() => import('../runs/list.js'),
 * 'listRuns')` has the type of `listRuns`. Registering a command (and `pollen --help`) then loads
 * only commander and the option tables, not the command's libraries (x509, undici, yaml, connect):
 * every command module imports its implementation this way (docs/architecture.md).
 */
export function lazy<M, K extends AsyncExports<M>>(load: () => Promise<M>, name: K): M[K] {
  const run = async (...args: unknown[]): Promise<unknown> =>
    ((await load())[name] as (...a: unknown[]) => Promise<unknown>)(...args);
  return run as M[K];
}

/** The options every command has (`pollen --json --config FILE …`). */
export interface GlobalFlags {
  json?: boolean;
  /** The config file of SuperLink connections (`--config`, POLLEN_CONFIG). */
  config?: string;
  /** The SuperLink connection to use (`--superlink`, POLLEN_SUPERLINK). */
  superlink?: string;
  /** A file holding a service-account secret (`--token-file`, POLLEN_TOKEN_FILE). */
  tokenFile?: string;
}

/**
 * Wrap a command's action: build the Output from the global --json flag and let errors
 * propagate to main(), which maps them to exit codes. `fn` is the command's function, or a small
 * adapter that adds the positional arguments to its options.
 */
export function action<O>(
  fn: (opts: O & GlobalFlags, out: Output, args: string[], cmd: Command) => Promise<void>,
) {
  return async function (this: Command, ...raw: unknown[]): Promise<void> {
    const cmd = raw[raw.length - 1] as Command;
    const opts = cmd.optsWithGlobals() as O & GlobalFlags;
    const args = cmd.args;
    const io = ioOf(cmd);
    await fn(opts, new Output(Boolean(opts.json), io.stdout, io.stderr, io.stdin), args, cmd);
  };
}

/** `action()` for a command whose variadic argument (`[names...]`) is its function's `names`. */
export function namesAction<O extends { names: string[] }>(fn: (opts: O, out: Output) => Promise<void>) {
  return action<Omit<O, 'names'>>((o, out, names) => fn({ ...o, names } as O, out));
}

/**
 * Which of `keys` took their value from `source`: `cli` (given on the command line), `env` (its
 * variable) or `default`. For the few commands whose behaviour depends on where a value came from.
 */
export function valuesFrom<K extends string>(
  cmd: Command,
  source: 'cli' | 'env' | 'default',
  ...keys: K[]
): Record<K, boolean> {
  return Object.fromEntries(keys.map((k) => [k, cmd.getOptionValueSource(k) === source])) as Record<
    K,
    boolean
  >;
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

/**
 * Wait for SIGINT or SIGTERM, or for `other`, whichever comes first; the signal handlers go
 * either way. Resolves with `{ value }` of `other`, or `{ signal }` on a signal.
 */
export function untilSignalOr<T>(other: Promise<T>): Promise<{ value: T } | { signal: NodeJS.Signals }> {
  return new Promise((res, rej) => {
    const settle = (): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      settle();
      res({ signal });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    other.then(
      (value) => {
        settle();
        res({ value });
      },
      (e: unknown) => {
        settle();
        rej(e);
      },
    );
  });
}

export function requireCaPath(ca: string | undefined): string {
  const dir = ca?.trim();
  if (!dir)
    throw new PollenError('CA_NOT_FOUND', 'CA path is required', {
      hint: 'Pass -c/--ca DIR or set POLLEN_CA_PATH to the folder made by `pollen cert init`.',
    });
  return dir;
}

/**
 * The values a command's options take from the environment and their defaults alone, as if it
 * were run with no flags: how `pollen start KIT` runs a kit's service, with the same variables
 * (`.env()`) as the service's own command.
 */
export function optionsFromEnvironment<O>(define: (cmd: Command) => Command): O {
  const cmd = define(new Command('options')).exitOverride();
  cmd.parse([], { from: 'user' });
  return cmd.opts() as O;
}
