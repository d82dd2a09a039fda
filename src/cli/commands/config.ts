import type { Command } from 'commander';
import { action, lazy } from '../command.js';
import { superLinkAddAction, superLinkAddCommand } from '../config/add-command.js';
import type { SuperLinkListOptions } from '../config/superlink-list.js';
import { dim } from '../output.js';

const superLinkList = lazy(() => import('../config/superlink-list.js'), 'superLinkList');
const superLinkUse = lazy(() => import('../config/superlink-use.js'), 'superLinkUse');

export function registerConfig(program: Command): void {
  const config = program
    .command('config')
    .description(`the CLI's own settings (in ${dim('~/.pollen/config.toml')}, or --config / POLLEN_CONFIG)`);
  const superlink = config
    .command('superlink')
    .description('name the SuperLinks you use: address, credentials, and the federation on each')
    .addHelpText(
      'after',
      `
Examples:
  pollen config superlink add local --address 127.0.0.1:9093 --kit ./admin-kit --default
  pollen config superlink list
  pollen config superlink use local
  pollen run examples/mnist local --stream    # commands take a SuperLink (or a federation on the default one) last`,
    );
  superLinkAddCommand(superlink.command('add <NAME>')).action(superLinkAddAction());
  superlink
    .command('list')
    .alias('ls')
    .description('list the SuperLink connections in the config file, the default marked *')
    .addHelpText(
      'after',
      `
Examples:
  pollen config superlink list
  POLLEN_CONFIG=./pollen.toml pollen config superlink ls --json`,
    )
    .action(action<SuperLinkListOptions>(superLinkList));
  superlink
    .command('use <NAME>')
    .description('make a SuperLink connection the default: commands that name none use it')
    .addHelpText(
      'after',
      `
Examples:
  pollen config superlink use prod
  pollen --superlink lab list    # one command on another connection, the default unchanged`,
    )
    .action(action<object>((o, out, [name]) => superLinkUse({ ...o, name: name! }, out)));
}
