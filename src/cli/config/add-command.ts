/**
 * The options of `pollen config superlink add`, shared with its earlier spelling `pollen federation
 * add`, which keeps working.
 */
import type { Command } from 'commander';
import { action, lazy } from '../command.js';
import type { Output } from '../output.js';
import type { SuperLinkAddOptions } from './superlink-add.js';

const superLinkAdd = lazy(() => import('./superlink-add.js'), 'superLinkAdd');

const ADD_EXAMPLES = `
Examples:
  pollen config superlink add local --address 127.0.0.1:9093 --kit ./admin-kit --default
  pollen config superlink add prod --address superlink.example.com:9093 --certificate me.crt --private-key me.key --root-certificate rootCA.pem
  pollen config superlink add study --address superlink.example.org:9093 --root-certificate rootCA.pem --federation cancer-study   # then: pollen login study`;

/** The options of `config superlink add` (and of its earlier spelling, `federation add`). */
export function superLinkAddCommand(cmd: Command): Command {
  return cmd
    .description('add or replace a SuperLink connection: its Control API address and your credentials')
    .requiredOption('--address <host:port>', 'the SuperLink Control API (port 9093 by default)')
    .option('--federation <name>', 'the federation on that SuperLink this entry targets (default: default)')
    .option('--kit <dir>', 'your enrolled admin startup kit')
    .option('--root-certificate <file>', 'project root CA (without --kit)')
    .option('--certificate <file>', 'your admin certificate (without --kit)')
    .option('--private-key <file>', 'its key (without --kit)')
    .option('--insecure', 'a development SuperLink without TLS')
    .option('--issuer <url>', 'the OpenID Provider to log in with (else the SuperLink names it)')
    .option('--client-id <id>', 'its public client for `pollen login` (default pollen-cli)')
    .option('--audience <aud>', 'the audience its access tokens name (default https://ADDRESS)')
    .option('--default', 'use it when a command names no SuperLink')
    .addHelpText('after', ADD_EXAMPLES);
}

/** `add` as an action: the positional NAME joins the options; `before` runs first (a notice). */
export function superLinkAddAction(before: (out: Output) => void = () => {}) {
  return action<Omit<SuperLinkAddOptions, 'name'>>((o, out, [name]) => {
    before(out);
    return superLinkAdd({ ...o, name: name! }, out);
  });
}
