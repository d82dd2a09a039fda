import { resolve } from 'node:path';
import type { Command } from 'commander';
import { PollenError } from '../../errors.js';
import { action } from '../command.js';
import { configPath, readConfig, saveFederation } from '../federation.js';
import { bold, dim } from '../output.js';

interface AddOpts {
  address: string;
  kit?: string;
  rootCertificate?: string;
  certificate?: string;
  privateKey?: string;
  insecure?: boolean;
  default?: boolean;
}

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
    .option('--default', 'use it when a command names no federation')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation add local --address 127.0.0.1:9093 --kit ./admin-kit --default
  pollen federation add prod --address superlink.example.com:9093 --certificate me.crt --private-key me.key --root-certificate rootCA.pem`,
    )
    .action(
      action<AddOpts>(async (o, out, args) => {
        const name = args[0]!;
        if (!o.insecure && !o.kit && !(o.certificate && o.privateKey && o.rootCertificate))
          throw new PollenError(
            'USAGE',
            'Give --kit, or --certificate, --private-key and --root-certificate',
          );
        // Paths are stored absolute: the config file need not sit next to them.
        const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(p));
        saveFederation(
          name,
          {
            address: o.address,
            kit: abs(o.kit),
            'root-certificate': abs(o.rootCertificate),
            certificate: abs(o.certificate),
            'private-key': abs(o.privateKey),
            insecure: o.insecure,
          },
          Boolean(o.default),
          configPath(o.config),
        );
        out.result(
          { name, path: configPath(o.config) },
          (d) => `saved federation ${bold(d.name)} in ${d.path}`,
        );
      }),
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
    .action(
      action<object>(async (o, out) => {
        const config = readConfig(configPath(o.config));
        const feds = Object.entries(config.federations ?? {}).map(([name, f]) => ({
          name,
          address: f.address,
          default: config['default-federation'] === name,
          insecure: Boolean(f.insecure),
        }));
        out.result({ path: configPath(o.config), federations: feds }, (d) =>
          d.federations.length === 0
            ? `no federations in ${d.path}: pollen federation add NAME --address HOST:9093 --kit ADMIN_KIT`
            : d.federations.map(
                (f) =>
                  `${f.default ? '*' : ' '} ${f.name.padEnd(16)} ${f.address}${f.insecure ? ' (insecure)' : ''}`,
              ),
        );
      }),
    );
}
