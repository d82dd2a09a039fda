/**
 * Flower's commands take the app folder before the federation (`flwr ls . FED`, `flwr supernode
 * register KEY . FED`); Pollen's take the target alone (a SuperLink connection, or a federation on
 * the default one: target.ts). Both forms work: `[APP_DIR] [FEDERATION]`, where one word is the
 * app folder when it reads as a path or is a folder holding an app, and the target otherwise.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PollenError } from '../errors.js';
import { NAME_PATTERN } from './connection-name.js';

const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();
const holdsApp = (p: string) =>
  isDir(p) && (existsSync(join(p, 'package.json')) || existsSync(join(p, 'pyproject.toml')));

/**
 * The target of `[APP_DIR] [FEDERATION]`. The app folder of a command that does not build it is
 * where Flower reads its federations from; Pollen reads its SuperLinks from the config file, so it
 * is only checked to be a folder.
 */
export function federationArg(first: string | undefined, second: string | undefined): string | undefined {
  if (first === undefined) return undefined;
  if (second === undefined && NAME_PATTERN.test(first) && !holdsApp(first)) return first;
  if (!isDir(first))
    throw new PollenError('FILE_NOT_FOUND', `The app folder ${first} does not exist`, {
      hint: 'Give the app folder (as in `flwr ls . FEDERATION`) or leave it out: pollen reads its SuperLinks from the config file (--config).',
    });
  return second;
}
