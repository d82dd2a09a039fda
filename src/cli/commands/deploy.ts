import { type Command, Option } from 'commander';
import { action, lazy } from '../command.js';
import type { DeployNginxOptions } from '../deploy/nginx.js';
import type { DeploySystemdOptions } from '../deploy/systemd.js';

const deploySystemd = lazy(() => import('../deploy/systemd.js'), 'deploySystemd');
const deployNginx = lazy(() => import('../deploy/nginx.js'), 'deployNginx');

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

  outputOptions(
    deploy
      .command('nginx')
      .description(
        'nginx in front of the SuperLink and the Certificate Service: TLS passed through (stream, SNI), PROXY protocol',
      ),
  )
    .requiredOption('--domain <domain>', 'the names are fleet., certs., control. and dashboard. under it')
    .requiredOption('--listen-address <ip>', "the host's public or VPN address nginx listens on")
    .option('--sni-port <port>', 'the shared port, routed by the SNI name', '443')
    .option('--fleet-port <port>', 'the Fleet API port nginx listens on (default: the port map’s)')
    .option(
      '--cert-service-port <port>',
      'the Certificate Service port nginx listens on (default: the port map’s)',
    )
    .option('--control-port <port>', 'the Control API port nginx listens on (default: the port map’s)')
    .option('--fleet-upstream <host:port>', 'where the Fleet API listens (default 127.0.0.1 and its port)')
    .option(
      '--cert-service-upstream <host:port>',
      'where the Certificate Service listens (default 127.0.0.1:8443)',
    )
    .option(
      '--control-upstream <host:port>',
      'where the Control API listens (default 127.0.0.1 and its port)',
    )
    .option(
      '--dashboard-cert <file>',
      'dashboard: the certificate browsers see (TLS ends at nginx), path on the host',
    )
    .option('--dashboard-key <file>', 'dashboard: its private key, path on the host')
    .option('--root-ca <file>', 'dashboard: the project root CA, to check the Control API behind nginx')
    .option(
      '--proxy-bind <ip>',
      'the source address nginx connects to Pollen from (what --proxy-protocol-from names)',
    )
    .option(
      '--stream-module <file>',
      'the stream module nginx loads, or "none" when built in (default: Debian’s)',
    )
    .option(
      '--runtime-dir <dir>',
      "pid file, logs and temporary files under this folder (default: Debian's places)",
    )
    .addHelpText(
      'after',
      `
Writes nginx.conf: a stream server that reads the SNI name (ssl_preread) and passes TLS through to
Pollen with a PROXY header (start the SuperLink and the Certificate Service with
--proxy-protocol-from 127.0.0.1), and an http server that ends TLS only for the browser dashboard.
Without SNI (an endpoint given as an IP address) the port chooses the API.

Examples:
  pollen deploy nginx --domain pollen.example.org --listen-address 203.0.113.10 -o nginx
  pollen deploy nginx --domain pollen.example.org --listen-address 203.0.113.10 \
    --dashboard-cert /etc/letsencrypt/live/dashboard.pollen.example.org/fullchain.pem \
    --dashboard-key /etc/letsencrypt/live/dashboard.pollen.example.org/privkey.pem \
    --root-ca /etc/pollen/rootCA.pem -o nginx`,
    )
    .action(action<DeployNginxOptions>(deployNginx));
}
