/** Where a run's artefacts land on the admin's disk, for `pollen pull` and `pollen simulate`. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { PollenError } from '../../errors.js';
import { checkArtefactName } from '../../sdk/artefacts.js';
import { writeSecretFile } from '../../util/files.js';

/** Where artefact `name` goes under `dir`; the name is checked again (it may come from a server). */
export function artefactPath(dir: string, name: string): string {
  checkArtefactName(name);
  const path = resolve(dir, ...name.split('/'));
  const inside = relative(dir, path);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside))
    throw new PollenError('ARTEFACT_NAME_INVALID', `Artefact name "${name}" leaves the output folder`);
  return path;
}

/** `sha256:HEX` of a file, or undefined if there is none. */
export async function fileHash(path: string): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * Write an artefact held in memory as `dir/name`: readable by its owner only (a model holds what
 * the sites' data taught it), complete or absent (temp file, then rename).
 */
export function writeArtefactFile(dir: string, name: string, bytes: Uint8Array): string {
  const path = artefactPath(dir, name);
  writeSecretFile(path, bytes);
  return path;
}
