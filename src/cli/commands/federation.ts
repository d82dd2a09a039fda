import type { Command } from 'commander';
import { action, lazy } from '../command.js';
import type { FederationAddOptions } from '../federation/add.js';
import type { FederationListOptions } from '../federation/list.js';
import { dim } from '../output.js';

const federationAdd = lazy(() => import('../federation/add.js'), 'federationAdd');
const federationList = lazy(() => import('../federation/list.js'), 'federationList');

export function registerFederation(program: Command): void {
  const cmd = program
    .command('federation')
    .description(
      `name the federations you use (in ${dim('~/.pollen/config.toml')}, or --config / POLLEN_CONFIG)`,
    )
    .addHelpText(
      'after',
      `
Examples:
  pollen federation add local --address 127.0.0.1:9093 --kit ./admin-kit --default
  pollen federation list
  pollen run examples/mnist local --stream    # commands take the federation name last`,
    );
  cmd
    .command('add <NAME>')
    .description('add or replace a federation: its Control API address and your admin credentials')
    .requiredOption('--address <host:port>', 'the SuperLink Control API (port 9093 by default)')
    .option('--kit <dir>', 'your enrolled admin startup kit')
    .option('--root-certificate <file>', 'project root CA (without --kit)')
    .option('--certificate <file>', 'your admin certificate (without --kit)')
    .option('--private-key <file>', 'its key (without --kit)')
    .option('--insecure', 'a development SuperLink without TLS')
    .option('--issuer <url>', 'the OpenID Provider to log in with (else the SuperLink names it)')
    .option('--client-id <id>', 'its public client for `pollen login` (default pollen-cli)')
    .option('--audience <aud>', 'the audience its access tokens name (default https://ADDRESS)')
    .option('--default', 'use it when a command names no federation')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation add local --address 127.0.0.1:9093 --kit ./admin-kit --default
  pollen federation add prod --address superlink.example.com:9093 --certificate me.crt --private-key me.key --root-certificate rootCA.pem
  pollen federation add lab --address superlink.example.org:9093 --root-certificate rootCA.pem   # then: pollen login lab`,
    )
    .action(
      action<Omit<FederationAddOptions, 'name'>>((o, out, [name]) =>
        federationAdd({ ...o, name: name! }, out),
      ),
    );
  cmd
    .command('list')
    .alias('ls')
    .description('list the federations in the config file')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation list
  POLLEN_CONFIG=./pollen.toml pollen federation ls --json`,
    )
    .action(action<FederationListOptions>(federationList));
}
