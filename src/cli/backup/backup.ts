import type { Component } from '../../store/backup/archive.js';
import { writeNewFile } from '../../util/files.js';
import type { Output } from '../output.js';
import { backupPassphrase, type PassphraseFlags } from './passphrase.js';

export interface BackupOptions extends PassphraseFlags {
  dir: string;
  output: string;
  component?: Component;
  ca?: string;
  database?: string;
}

/** `pollen backup DIR -o FILE`: a consistent, encrypted and authenticated archive of a component. */
export async function backup(o: BackupOptions, out: Output): Promise<void> {
  const passphrase = backupPassphrase(o);
  const { snapshotComponent } = await import('../../store/backup/snapshot.js');
  const { sealArchive } = await import('../../store/backup/archive.js');
  out.progress(`taking a snapshot of ${o.dir}`);
  const contents = await snapshotComponent({
    dir: o.dir,
    component: o.component,
    ca: o.ca,
    database: o.database,
  });
  const sealed = sealArchive(contents, passphrase);
  writeNewFile(o.output, sealed, 0o600);
  out.result(
    {
      file: o.output,
      component: contents.component,
      createdAt: contents.createdAt,
      database: contents.database,
      files: contents.files.length,
      bytes: sealed.length,
      privateKeys: contents.privateKeys,
      encrypted: true,
    },
    (d) => [
      `Backed up the ${d.component} in ${o.dir} to ${d.file}`,
      `  ${d.files} files, ${d.bytes} bytes, store: ${d.database}${d.privateKeys ? ', private keys inside' : ''}`,
      '  encrypted and authenticated (AES-256-GCM, key from the passphrase by scrypt)',
    ],
  );
}
