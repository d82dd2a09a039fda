import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { DeployFile } from '../../deploy/files.js';
import { PollenError } from '../../errors.js';
import { writeFileAtomic } from '../../util/files.js';
import { bold, dim, type Output } from '../output.js';

/** The options every `pollen deploy` subcommand has. */
export interface DeployOutputOptions {
  /** The folder the files go to (`-o`). */
  out: string;
  /** Replace files that exist (never without it: a generated key must not be lost by accident). */
  force?: boolean;
}

/**
 * Write a generator's files into `-o DIR` and print them: one document with --json
 * (`{ ok, generator, outDir, files: [{ path, mode }], notes }`), a list and the next steps as text.
 */
export function writeDeployFiles(
  generator: string,
  o: DeployOutputOptions,
  files: DeployFile[],
  out: Output,
  notes: string[] = [],
): void {
  const outDir = resolve(o.out);
  const existing = files.filter((f) => existsSync(join(outDir, f.path)));
  if (existing.length > 0 && !o.force)
    throw new PollenError('FILE_EXISTS', `${join(outDir, existing[0]!.path)} exists`, {
      hint: 'Choose another -o folder, or pass --force to replace the generated files.',
    });
  for (const f of files) writeFileAtomic(join(outDir, f.path), f.content, f.mode);
  const document = {
    generator,
    outDir,
    files: files.map((f) => ({ path: f.path, mode: f.mode.toString(8).padStart(4, '0') })),
    notes,
  };
  out.result(document, (d) => [
    `wrote ${d.files.length} ${generator} file${d.files.length === 1 ? '' : 's'} in ${bold(d.outDir)}`,
    ...d.files.map((f) => `  ${f.path} ${dim(f.mode)}`),
    ...d.notes.map((n) => dim(n)),
  ]);
}

/** A port given on the command line, checked. */
export function portArgument(flag: string, value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new PollenError('INVALID_ARGUMENT', `${flag} ${value} is not a port`, {
      hint: 'Give a port between 1 and 65535.',
    });
  return port;
}
