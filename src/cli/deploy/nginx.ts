import { isIP } from 'node:net';
import {
  DEBIAN_STREAM_MODULE,
  type Endpoint,
  NGINX_NAMES,
  type NginxOptions,
  nginxDefaults,
  nginxFiles,
} from '../../deploy/nginx.js';
import { PollenError } from '../../errors.js';
import type { Output } from '../output.js';
import { parseAddress } from '../participant-tls.js';
import { type DeployOutputOptions, writeDeployFiles } from './write.js';

export interface DeployNginxOptions extends DeployOutputOptions {
  domain: string;
  listenAddress: string;
  sniPort?: string;
  fleetPort?: string;
  certServicePort?: string;
  controlPort?: string;
  fleetUpstream?: string;
  certServiceUpstream?: string;
  controlUpstream?: string;
  dashboardCert?: string;
  dashboardKey?: string;
  rootCa?: string;
  streamModule?: string;
  runtimeDir?: string;
  proxyBind?: string;
}

const invalid = (message: string, hint: string) => new PollenError('INVALID_ARGUMENT', message, { hint });

function port(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw invalid(`${flag} ${value} is not a port`, 'Give a port between 1 and 65535.');
  return n;
}

const upstream = (value: string | undefined, fallback: Endpoint, flag: string): Endpoint =>
  value === undefined ? fallback : parseAddress(value, flag);

/** The generator's options from the command line, checked. */
export function nginxOptions(o: DeployNginxOptions): NginxOptions {
  const defaults = nginxDefaults();
  if (
    !/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(
      o.domain,
    )
  )
    throw invalid(
      `--domain ${o.domain} is not a DNS domain`,
      `Give the domain the names ${Object.values(NGINX_NAMES).join('., ')}. are under, e.g. --domain pollen.example.org.`,
    );
  if (!isIP(o.listenAddress))
    throw invalid(
      `--listen-address takes the host's IP address, not "${o.listenAddress}"`,
      'Give the public (or VPN) address of the host: Pollen keeps the same ports on 127.0.0.1.',
    );
  const ports = {
    fleet: port(o.fleetPort, defaults.ports.fleet, '--fleet-port'),
    certService: port(o.certServicePort, defaults.ports.certService, '--cert-service-port'),
    control: port(o.controlPort, defaults.ports.control, '--control-port'),
  };
  const sniPort = port(o.sniPort, defaults.sniPort, '--sni-port');
  const all = [sniPort, ports.fleet, ports.certService, ports.control];
  if (new Set(all).size !== all.length)
    throw invalid(
      `the ports nginx listens on must differ (got ${all.join(', ')})`,
      'Give --sni-port, --fleet-port, --cert-service-port and --control-port four different ports.',
    );
  const dashboardFlags = [o.dashboardCert, o.dashboardKey, o.rootCa];
  if (dashboardFlags.some((f) => f !== undefined) && dashboardFlags.some((f) => f === undefined))
    throw new PollenError(
      'USAGE',
      'the dashboard needs --dashboard-cert, --dashboard-key and --root-ca together',
      {
        hint: 'Give all three (the certificate browsers see, its key, the project root that checks the Control API), or none: then TLS ends only at Pollen.',
      },
    );
  if (o.proxyBind !== undefined && !isIP(o.proxyBind))
    throw invalid(
      `--proxy-bind takes an IP address of this host, not "${o.proxyBind}"`,
      'Give the address nginx connects to Pollen from: the one --proxy-protocol-from names.',
    );
  const module = o.streamModule ?? DEBIAN_STREAM_MODULE;
  return {
    domain: o.domain.toLowerCase(),
    listenAddress: o.listenAddress,
    sniPort,
    ports,
    upstreams: {
      fleet: upstream(o.fleetUpstream, defaults.upstreams.fleet, '--fleet-upstream'),
      certService: upstream(o.certServiceUpstream, defaults.upstreams.certService, '--cert-service-upstream'),
      control: upstream(o.controlUpstream, defaults.upstreams.control, '--control-upstream'),
    },
    ...(module !== 'none' && { streamModule: module }),
    ...(o.dashboardCert &&
      o.dashboardKey &&
      o.rootCa && { dashboard: { cert: o.dashboardCert, key: o.dashboardKey, rootCa: o.rootCa } }),
    ...(o.runtimeDir && { runtimeDir: o.runtimeDir }),
    ...(o.proxyBind && { proxyBind: o.proxyBind }),
  };
}

/** `pollen deploy nginx`: nginx.conf for the cloud host. */
export async function deployNginx(o: DeployNginxOptions, out: Output): Promise<void> {
  const options = nginxOptions(o);
  writeDeployFiles('nginx', o, nginxFiles(options), out, [
    'check: nginx -t -c "$PWD/nginx.conf"',
    `install: cp nginx.conf /etc/nginx/nginx.conf && systemctl reload nginx; start Pollen with --proxy-protocol-from ${options.proxyBind ?? (options.upstreams.fleet.host.startsWith('127.') ? '127.0.0.1' : 'NGINX_ADDRESS')}`,
  ]);
}
