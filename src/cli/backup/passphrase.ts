import { readFileSync } from 'node:fs';
import { PollenError } from '../../errors.js';

/** Where a backup passphrase comes from: a file, or POLLEN_BACKUP_PASSPHRASE (never a flag's value). */
export interface PassphraseFlags {
  passphraseFile?: string;
  /** Filled from POLLEN_BACKUP_PASSPHRASE only (a hidden option: a command line is public). */
  passphrase?: string;
}

/** The passphrase of an archive, or a precise refusal when none was given. */
export function backupPassphrase(o: PassphraseFlags): string {
  let text = o.passphrase;
  if (o.passphraseFile !== undefined) {
    try {
      text = readFileSync(o.passphraseFile, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new PollenError('FILE_NOT_FOUND', `Cannot read the passphrase file ${o.passphraseFile}`, {
        cause: e,
      });
    }
  }
  if (!text)
    throw new PollenError(
      'BACKUP_PASSPHRASE_REQUIRED',
      'A backup archive needs a passphrase: none was given',
    );
  if (text.length < 12)
    throw new PollenError(
      'BACKUP_PASSPHRASE_REQUIRED',
      'The backup passphrase is too short (at least 12 characters)',
    );
  return text;
}
