import type { Command } from 'commander';
import { action } from '../command.js';
import { superLinkAddAction, superLinkAddCommand } from '../config/add-command.js';
import { type SuperLinkListOptions, superLinkList } from '../config/superlink-list.js';
import type { Output } from '../output.js';

/** The earlier spellings of `config superlink add|list` work, and say where they moved (stderr). */
const moved = (from: string, to: string) => (out: Output) =>
  out.warn(
    `\`pollen federation ${from}\` moved to \`pollen config superlink ${to}\`; this spelling keeps working`,
  );

export function registerFederation(program: Command): void {
  const cmd = program
    .command('federation')
    .description('federations on a SuperLink: members, invitations, nodes, runs')
    .addHelpText(
      'after',
      `
Examples:
  pollen config superlink add local --address 127.0.0.1:9093 --kit ./admin-kit --default
  pollen run examples/mnist local --stream    # commands take a SuperLink (or a federation) last`,
    );
  superLinkAddCommand(cmd.command('add <NAME>')).action(superLinkAddAction(moved('add', 'add')));
  cmd
    .command('list')
    .alias('ls')
    .description('list the SuperLink connections in the config file (now: pollen config superlink list)')
    .action(
      action<SuperLinkListOptions>((o, out) => {
        moved('list', 'list')(out);
        return superLinkList(o, out);
      }),
    );
}
