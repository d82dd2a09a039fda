import { type Command, Option } from 'commander';
import { action, lazy } from '../command.js';
import type { DeployComposeOptions } from '../deploy/compose.js';
import type { DeployFirewallOptions } from '../deploy/firewall.js';
import type { DeployKubernetesOptions } from '../deploy/kubernetes.js';
import type { DeployNginxOptions } from '../deploy/nginx.js';
import type { DeployOpenVpnOptions } from '../deploy/openvpn.js';
import type { DeployPythonEnvOptions } from '../deploy/python-env.js';
import type { DeploySystemdOptions } from '../deploy/systemd.js';
import type { DeployWireGuardOptions } from '../deploy/wireguard.js';

const deploySystemd = lazy(() => import('../deploy/systemd.js'), 'deploySystemd');
const deployNginx = lazy(() => import('../deploy/nginx.js'), 'deployNginx');
const deployPythonEnv = lazy(() => import('../deploy/python-env.js'), 'deployPythonEnv');
const deployWireGuard = lazy(() => import('../deploy/wireguard.js'), 'deployWireGuard');
const deployOpenVpn = lazy(() => import('../deploy/openvpn.js'), 'deployOpenVpn');
const deployFirewall = lazy(() => import('../deploy/firewall.js'), 'deployFirewall');
const deployCompose = lazy(() => import('../deploy/compose.js'), 'deployCompose');
const deployKubernetes = lazy(() => import('../deploy/kubernetes.js'), 'deployKubernetes');

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
    .description(
      'generate deployment files: systemd units, firewall rules, VPN and proxy configurations, Kubernetes manifests',
    );

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
      .command('python-env')
      .description("a script that makes a site's virtual environment for Python apps"),
  )
    .requiredOption('--requirements <file>', "the apps' requirements (pip's requirements.txt)")
    .option(
      '--wheelhouse <dir>',
      'install from this folder of wheels alone, never the package index (relative: beside the script)',
    )
    .option('--venv <dir>', 'where the virtual environment goes', '/opt/pollen-venv')
    .addHelpText(
      'after',
      `
Writes setup-python-env.sh (POSIX sh, checked with shellcheck) and a copy of requirements.txt.
The script makes a virtual environment that sees the system's packages, installs the
requirements, and runs \`pollen env check\` when pollen is on PATH. Details:
docs/python-operators.md.

Examples:
  pollen deploy python-env --requirements requirements.txt -o site-env
  pollen deploy python-env --requirements requirements.txt --wheelhouse wheels -o site-env`,
    )
    .action(action<DeployPythonEnvOptions>(deployPythonEnv));

  outputOptions(
    deploy.command('firewall').description("a host's nftables rules, from the port map (docs/network.md)"),
  )
    .requiredOption(
      '--role <roles>',
      'what the host runs: superlink, cert-service, site (comma-separated for a host with several)',
    )
    .option(
      '--vpn <kind>',
      'the VPN sites use (wireguard, openvpn): its port opens, the Fleet API only inside it',
    )
    .option('--vpn-interface <name>', 'the VPN interface (default wg0 for WireGuard, tun0 for OpenVPN)')
    .option('--ssh <cidrs>', 'where SSH may come from: addresses or CIDRs, comma-separated, or any', 'any')
    .option('--no-ssh', 'close SSH')
    .option('--researchers <cidrs>', 'where the Control API may be reached from (default: anywhere)')
    .option('--restrict-outbound', "drop outbound traffic too, except the federation's flows, DNS and NTP")
    .addHelpText(
      'after',
      `
Writes pollen-firewall.nft: a table "inet pollen" whose input chain drops everything but
established traffic, loopback, ICMP, SSH and the ports the port map lists for the host's roles
(from the parties it names); forwarding is dropped. Loopback-only ports are never opened.

Examples:
  pollen deploy firewall --role superlink,cert-service --vpn wireguard --ssh 198.51.100.7 -o fw
  pollen deploy firewall --role site --vpn wireguard --restrict-outbound -o fw
  nft -c -f fw/pollen-firewall.nft && nft -f fw/pollen-firewall.nft`,
    )
    .action(action<DeployFirewallOptions>(deployFirewall));

  outputOptions(
    deploy
      .command('wireguard')
      .description('WireGuard configurations: a hub on the SuperLink host, one peer per organisation'),
  )
    .requiredOption('--org <name>', 'an organisation (repeatable; each gets its folder and address)', collect)
    .requiredOption(
      '--endpoint <host[:port]>',
      "how organisations reach the hub: the SuperLink host's public name",
    )
    .option('--listen-port <port>', "the hub's UDP port (default: the port map's, 51820)")
    .option(
      '--network <cidr>',
      'the VPN network: the hub takes .1, organisations the next ones',
      '10.77.0.0/24',
    )
    .addHelpText(
      'after',
      `
Writes hub/wg0.conf and ORG/wg0.conf for each --org (0600: each holds a private key, made here
with Node's X25519, plus a preshared key per organisation). An organisation's tunnel reaches the
hub's address only; the hub's firewall (pollen deploy firewall --vpn wireguard) drops forwarding.

Examples:
  pollen deploy wireguard --org hospital-a --org hospital-b --endpoint superlink.example.org -o vpn
  wg-quick up ./vpn/hub/wg0.conf`,
    )
    .action(action<DeployWireGuardOptions>(deployWireGuard));

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

  outputOptions(
    deploy
      .command('openvpn')
      .description('OpenVPN configurations: a hub on the SuperLink host, one client per organisation'),
  )
    .requiredOption('--org <name>', 'an organisation (repeatable; each gets its folder and address)', collect)
    .requiredOption(
      '--endpoint <host[:port]>',
      "how organisations reach the hub: the SuperLink host's public name",
    )
    .option('--port <port>', "the hub's UDP port (default: the port map's, 1194)")
    .option(
      '--network <cidr>',
      'the VPN network: the hub takes .1, organisations the next ones',
      '10.78.0.0/24',
    )
    .addHelpText(
      'after',
      `
Writes hub/pollen.conf, hub/ccd/ORG (each organisation's fixed address) and ORG/pollen.conf for
each --org. Each side has a self-signed Ed25519 certificate made here and pins the other's
SHA-256 fingerprint (OpenVPN 2.6 peer-fingerprint, no CA); TLS 1.3 only, with a tls-crypt key.
The configuration files hold private keys (0600). An organisation's tunnel reaches the hub's
address only: the hub pushes no route, relays nothing between clients, and clients ignore
pushed routes; the hub's firewall (pollen deploy firewall --vpn openvpn) drops forwarding.

Examples:
  pollen deploy openvpn --org hospital-a --org hospital-b --endpoint superlink.example.org -o vpn
  openvpn --cd ./vpn/hub --config pollen.conf`,
    )
    .action(action<DeployOpenVpnOptions>(deployOpenVpn));

  outputOptions(
    deploy
      .command('compose')
      .description(
        'a docker-compose file for a federation on one host: Certificate Service, SuperLink, sites, Keycloak',
      ),
  )
    .option(
      '--site <name>',
      'a site without a GPU (repeatable): a SuperNode enrolling from its token',
      collect,
    )
    .option(
      '--gpu-site <name>',
      'a site with NVIDIA GPUs (repeatable): the GPU image, one GPU, a DCGM exporter beside it',
      collect,
    )
    .option(
      '--image-prefix <prefix>',
      'images are PREFIX + superlink, cert-service, supernode…',
      'myorg/pollen-',
    )
    .option('--tag <tag>', "the images' tag", '0.1.0')
    .option(
      '--build-context <dir>',
      'the Pollen repository, relative to the compose file: adds build: entries (deploy/docker)',
    )
    .option(
      '--cert-service-host <name>',
      "a name the Certificate Service's certificate carries besides cert-service (repeatable)",
      collect,
    )
    .option(
      '--superlink-host <name>',
      "a name the SuperLink's certificate carries besides superlink (repeatable; its token must name it)",
      collect,
    )
    .option('--keycloak-url <url>', "Keycloak's public https origin (default https://id.example.org)")
    .option(
      '--realm <file>',
      'the realm export Keycloak imports, relative to the compose file (default ./keycloak/realm.json)',
    )
    .option(
      '--identity-config <file>',
      "the SuperLink's [identity.oidc] file for that realm, relative to the compose file (default ./keycloak/identity.toml)",
    )
    .option('--no-keycloak', 'leave out Keycloak and its PostgreSQL')
    .addHelpText(
      'after',
      `
Writes compose.yaml. Every Pollen service runs from the deploy/docker images as the user pollen,
read-only with a tmpfs on /tmp, no capability, healthy once \`pollen ready\` sees its /readyz.
The SuperLink and each site make their kit from their token on first start (pollen package,
then pollen start: enrollment at https://cert-service:8443). Keys, tokens and passwords are
compose secrets read from ./secrets; the CA folder is mounted read-only from ./ca.

Examples:
  pollen deploy compose --site hospital-a --site hospital-b -o federation
  pollen deploy compose --site hospital-a --gpu-site hospital-c --superlink-host superlink.example.org -o federation
  docker compose -f federation/compose.yaml config --quiet   # on a host with Docker`,
    )
    .action(action<DeployComposeOptions>(deployCompose));

  outputOptions(
    deploy
      .command('kubernetes')
      .description(
        'Kustomize manifests: the SuperLink and the Certificate Service, a SuperNode StatefulSet per organisation, NetworkPolicies',
      ),
  )
    .option(
      '--org <name>',
      'an organisation with CPU SuperNodes (repeatable): its namespace, StatefulSet and tokens',
      collect,
    )
    .option('--gpu-org <name>', 'an organisation whose SuperNodes get NVIDIA GPUs (repeatable)', collect)
    .requiredOption(
      '--superlink-host <name>',
      "the name sites dial for the Fleet API (the SuperLink's certificate names it)",
    )
    .requiredOption(
      '--cert-service-url <url>',
      'the Certificate Service as sites reach it (https://HOST:PORT)',
    )
    .requiredOption(
      '--database <url>',
      "the Certificate Service's PostgreSQL, postgres://USER@HOST:PORT/DB (the password goes in a Secret)",
    )
    .option('--replicas <n>', 'SuperNodes per organisation at first (default 2; kubectl scale changes it)')
    .option('--gpus-per-node <n>', 'GPUs of each SuperNode of a --gpu-org (default 1)')
    .option('--namespace <name>', "the SuperLink's and the Certificate Service's namespace (default pollen)")
    .option('--registry <prefix>', 'the images are PREFIX/pollen-superlink:TAG, … (default pollen)')
    .option('--tag <tag>', "the images' tag (default 0.1.0)")
    .option('--cert-service-replicas <n>', 'Certificate Service replicas (default 2)')
    .option(
      '--monitoring-namespace <name>',
      "Prometheus's namespace, let in to the ops listeners (default monitoring)",
    )
    .option(
      '--external-sites <cidrs>',
      'sites outside the cluster that reach the Fleet API (CIDRs, comma-separated)',
    )
    .option('--storage <size>', 'the persistent volume of the SuperLink and of each SuperNode (default 10Gi)')
    .addHelpText(
      'after',
      `
Writes base/cloud/, base/site/ and overlays/cloud/ plus overlays/ORG/ for each organisation
(Kustomize; apply one overlay per namespace). The SuperLink is one replica with the Recreate
strategy; the Certificate Service runs replicas over PostgreSQL; each organisation's StatefulSet
has pods ORG-1 … ORG-N, and pod ORG-N enrolls as site ORG-N with the token ORG-N.token from its
own namespace's Secret pollen-tokens-ORG (pollen token batch -n N --prefix ORG --org ORG -o DIR/).
Pods run as uid 10001 on a read-only root file system, mount secrets read-only, and are probed on
/healthz and /readyz of the ops listener, which listens on the pod's address. NetworkPolicies
follow the port map (docs/network.md).

Examples:
  pollen deploy kubernetes --org hospital-a --org hospital-b --gpu-org gpu-lab \
    --superlink-host superlink.example.org --cert-service-url https://certs.example.org:8443 \
    --database postgres://pollen@postgres.pollen.svc:5432/pollen -o k8s
  kubectl kustomize k8s/overlays/hospital-a`,
    )
    .action(action<DeployKubernetesOptions>(deployKubernetes));
}
