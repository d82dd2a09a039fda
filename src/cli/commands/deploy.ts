import { type Command, Option } from 'commander';
import { action, lazy } from '../command.js';
import type { DeploySystemdOptions } from '../deploy/systemd.js';

const deploySystemd = lazy(() => import('../deploy/systemd.js'), 'deploySystemd');

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `-o DIR` and `--force`, on every generator. */
function outputOptions(cmd: Command): Command {
  return cmd
    .requiredOption('-o, --out <dir>', 'folder the generated files are written to')
    .option('--force', 'replace files that exist in the folder');
}

/**
 * `pollen deploy …`: generators of the files a host needs (units, scripts, firewall rules, VPN
 * and proxy configurations), written for an operator to review and install (docs/deployment.md).
 */
export function registerDeploy(program: Command): void {
  const deploy = program
    .command('deploy')
    .description('generate deployment files: systemd units, firewall rules, VPN and proxy configurations');

  outputOptions(
    deploy
      .command('systemd')
      .description('a hardened systemd unit for the SuperLink, a SuperNode or the Certificate Service'),
  )
    .addOption(
      new Option('--component <name>', 'the component the unit runs')
        .choices(['superlink', 'supernode', 'cert-service'])
        .makeOptionMandatory(),
    )
    .option(
      '--kit <dir>',
      'SuperLink, SuperNode: the startup kit installed on the host (writable by the service)',
    )
    .option('--ca <dir>', 'Certificate Service: the CA folder on the host')
    .option(
      '--workspace <dir>',
      'Certificate Service: its state folder (default /var/lib/pollen/cert-service)',
    )
    .option(
      '--api-key-file <file>',
      'Certificate Service: the admin API key file (default /etc/pollen/cert-service/api_key.txt)',
    )
    .option('--hostname <name>', 'Certificate Service: a name it is reached at (repeatable)', collect)
    .option('--port <port>', 'Certificate Service: its port (below 1024 grants CAP_NET_BIND_SERVICE)')
    .option('--pollen <path>', 'the pollen executable on the host', '/usr/bin/pollen')
    .option('--user <name>', 'the system user the service runs as', 'pollen')
    .option(
      '--metrics-address <host:port>',
      "the component's ops listener, polled for readiness (default: the port map's)",
    )
    .option(
      '--python-env <dir>',
      'SuperNode: the virtual environment of Python apps (see pollen deploy python-env)',
    )
    .option('--gpus', 'SuperNode: let app processes open NVIDIA GPUs')
    .addHelpText(
      'after',
      `
Writes pollen-COMPONENT.service and pollen-COMPONENT.sysusers.conf. The unit runs as a dedicated
user, read-only except its kit (or workspace), without capabilities, and counts as started only
once \`pollen ready\` sees its /readyz answer. Check it on the host:
systemd-analyze verify pollen-superlink.service; systemd-analyze security pollen-superlink.service

Examples:
  pollen deploy systemd --component superlink --kit /var/lib/pollen/superlink -o units
  pollen deploy systemd --component supernode --kit /var/lib/pollen/site-1 --python-env /opt/pollen-venv -o units
  pollen deploy systemd --component cert-service --ca /etc/pollen/ca --hostname certs.example.org -o units`,
    )
    .action(action<DeploySystemdOptions>(deploySystemd));
}
