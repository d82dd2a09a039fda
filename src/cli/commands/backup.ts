import { type Command, Option } from 'commander';
import type { BackupOptions } from '../backup/backup.js';
import type { RestoreOptions } from '../backup/restore.js';
import { action, lazy } from '../command.js';

const backup = lazy(() => import('../backup/backup.js'), 'backup');
const restore = lazy(() => import('../backup/restore.js'), 'restore');

const componentOption = (help: string) =>
  new Option('--component <name>', help).choices(['superlink', 'cert-service', 'kit']);

/** Both commands take the passphrase from a file or POLLEN_BACKUP_PASSPHRASE, never from a flag. */
function passphraseOptions(cmd: Command): Command {
  return cmd
    .option('--passphrase-file <file>', 'the archive passphrase (first line of the file)')
    .addOption(
      new Option('--passphrase <text>', 'the archive passphrase').env('POLLEN_BACKUP_PASSPHRASE').hideHelp(),
    );
}

export function registerBackup(program: Command): void {
  passphraseOptions(
    program
      .command('backup')
      .description(
        'archive a SuperLink, Certificate Service or startup kit while it runs (encrypted, authenticated)',
      )
      .argument('<dir>', 'the SuperLink state dir, the Certificate Service workspace or the kit')
      .requiredOption('-o, --output <file>', 'the archive to write (never overwritten)')
      .addOption(componentOption('what DIR holds (found from its files when absent)'))
      .option(
        '-c, --ca <dir>',
        "the Certificate Service's CA folder, when it is not inside DIR (archived as ca/)",
      )
      .option('--database <url>', 'the postgres://… store of the component (dumped with pg_dump)'),
  )
    .addHelpText(
      'after',
      `
Examples:
  pollen backup ./superlink -o superlink-$(date +%F).pollen-backup --passphrase-file /etc/pollen/backup.pass
  pollen backup ./cert-service -c ./ca -o certs.pollen-backup

SQLite stores are copied with SQLite's online backup, so the component keeps running. Every
archive is encrypted and authenticated as a whole with a key derived from the passphrase.`,
    )
    .action(action<BackupOptions>((o, out, [dir]) => backup({ ...o, dir: dir! }, out)));

  passphraseOptions(
    program
      .command('restore')
      .description('check a backup archive whole and write its component into an empty folder')
      .argument('<file>', 'the archive `pollen backup` wrote')
      .requiredOption('-w, --workspace <dir>', 'a new or empty folder for the component')
      .addOption(componentOption('refuse an archive of any other component'))
      .option('--database <url>', 'an empty postgres://… database for an archive holding a pg_dump'),
  ).action(action<RestoreOptions>((o, out, [file]) => restore({ ...o, file: file! }, out)));
}
