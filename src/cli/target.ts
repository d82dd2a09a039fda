/**
 * What the last argument of a command that talks to a SuperLink (`pollen run . TARGET`, `pollen
 * list TARGET`, `pollen login TARGET` …) names, and which connection and federation it picks:
 *
 * - `--superlink NAME` given: that connection; TARGET, if any, is a federation on it.
 * - TARGET is a connection entry: that SuperLink, and the federation the entry names (`default`
 *   unless it names one) — what TARGET meant before a SuperLink hosted several federations.
 * - otherwise TARGET is a federation on the default connection.
 * - no TARGET: the default connection and its entry's federation.
 */
import { PollenError } from '../errors.js';
import {
  type Connection,
  type ConnectionsFile,
  configPath,
  connectionOf,
  defaultConnection,
  notFound,
  readConnections,
} from './connections.js';

/** A command's last argument, or (`pollen federation show NAME`) a name that is a federation only. */
export type TargetArg = string | undefined | { federation: string };

export interface Target {
  connection: Connection;
  /** The federation on that SuperLink, as the SuperLink names it. */
  federation: string;
  /** How to name this target again on a command line (`lab`, `study --superlink prod`). */
  arg: string;
  /** Whether the federation came from a last argument that named no connection entry. */
  guessed: boolean;
}

export interface TargetFlags {
  /** The config file (`--config`). */
  config?: string;
  /** The connection to use (`--superlink`), whatever TARGET is. */
  superlink?: string;
}

export function resolveTarget(target: TargetArg, flags: TargetFlags = {}): Target {
  const file = readConnections(configPath(flags.config));
  const { name, federation } =
    typeof target === 'object'
      ? { name: flags.superlink ?? defaultConnection(file), federation: target.federation }
      : pick(file, target, flags.superlink);
  if (name === undefined && typeof target === 'string')
    throw new PollenError(
      'SUPERLINK_NOT_FOUND',
      `"${target}" is no SuperLink in ${file.path}, and there is no default SuperLink to find a federation "${target}" on`,
      { hint: notFound(file, target).hint },
    );
  if (name === undefined || !file.entries[name]) throw notFound(file, name);
  const connection = connectionOf(file, name);
  const chosen = federation ?? connection.federation;
  return {
    connection,
    federation: chosen,
    arg: argOf(file, connection, chosen),
    guessed: typeof target === 'string' && flags.superlink === undefined && federation !== undefined,
  };
}

function pick(
  file: ConnectionsFile,
  target: string | undefined,
  superlink: string | undefined,
): { name: string | undefined; federation?: string } {
  if (superlink !== undefined) return { name: superlink, federation: target };
  if (target !== undefined && file.entries[target]) return { name: target };
  return { name: defaultConnection(file), federation: target };
}

/** The shortest command-line words that resolve back to this connection and federation. */
function argOf(file: ConnectionsFile, c: Connection, federation: string): string {
  if (federation === c.federation) return c.name;
  if (c.name === defaultConnection(file) && !file.entries[federation]) return federation;
  return `${federation} --superlink ${c.name}`;
}
