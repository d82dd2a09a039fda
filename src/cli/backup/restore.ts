import { readFileSync } from 'node:fs';
import { PollenError } from '../../errors.js';
import type { Component } from '../../store/backup/archive.js';
import type { Output } from '../output.js';
import { backupPassphrase, type PassphraseFlags } from './passphrase.js';

export interface RestoreOptions extends PassphraseFlags {
  file: string;
  workspace: string;
  component?: Component;
  database?: string;
}

/** `pollen restore FILE -w DIR`: check an archive whole, then write its component into an empty folder. */
export async function restore(o: RestoreOptions, out: Output): Promise<void> {
  const passphrase = backupPassphrase(o);
  const { openArchive } = await import('../../store/backup/archive.js');
  const { restoreComponent } = await import('../../store/backup/snapshot.js');
  let archive: Buffer;
  try {
    archive = readFileSync(o.file);
  } catch (e) {
    throw new PollenError('FILE_NOT_FOUND', `Cannot read the archive ${o.file}`, { cause: e });
  }
  const contents = openArchive(archive, passphrase);
  if (o.component && o.component !== contents.component)
    throw new PollenError(
      'BACKUP_COMPONENT_MISMATCH',
      `${o.file} holds a ${contents.component} backup, not a ${o.component} one`,
    );
  const { files } = await restoreComponent(contents, { dir: o.workspace, database: o.database });
  out.result(
    {
      dir: o.workspace,
      component: contents.component,
      createdAt: contents.createdAt,
      files,
      database: contents.database,
    },
    (d) => [
      `Restored the ${d.component} of ${d.createdAt} into ${d.dir} (${d.files} files, store: ${d.database})`,
      `  start it with its folder pointing here${d.component === 'cert-service' ? ' (-w DIR, and -c DIR/ca when the CA was archived with --ca)' : ''}`,
    ],
  );
}
