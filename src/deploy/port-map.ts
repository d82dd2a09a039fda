/**
 * The port map: every port a Pollen deployment listens on, who connects to it and where it may be
 * exposed. The single source for docs/network.md (rendered by `portMapTable`, checked by a test),
 * the firewall generator (`pollen deploy firewall`) and the VPN generators' ports.
 */

/** The kinds of host a deployment has, each with its own firewall (`pollen deploy firewall --role`). */
export const HOST_ROLES = ['superlink', 'cert-service', 'site'] as const;
export type HostRole = (typeof HOST_ROLES)[number];

/** Who opens a connection: a host role, or a party outside the hosts Pollen runs on. */
export type Peer = HostRole | 'researcher' | 'local process' | 'monitoring';

/** Where a port may be reachable from: only the host itself, the VPN, or the internet. */
export type Exposure = 'loopback' | 'vpn' | 'public';

export interface PortRow {
  /** The program that listens. */
  component: 'SuperLink' | 'SuperNode' | 'Certificate Service' | 'WireGuard' | 'OpenVPN';
  /** What the port serves. */
  name: string;
  port: number;
  protocol: 'tcp' | 'udp';
  /** The host role the listener runs on. */
  host: HostRole;
  /** Who connects (the direction is always from these to `host`). */
  from: readonly Peer[];
  /** Who connects, in words. */
  whoConnects: string;
  /** Transport security on this port. */
  security: string;
  /** The widest exposure the port is meant for; a firewall opens nothing wider. */
  exposed: Exposure;
  /** The flag that moves it. */
  flag: string;
}

export const PORT_MAP: readonly PortRow[] = [
  {
    component: 'Certificate Service',
    name: 'enrollment, renewal, CRL, admin API',
    port: 8443,
    protocol: 'tcp',
    host: 'cert-service',
    from: ['site', 'superlink', 'researcher'],
    whoConnects: 'SuperNodes and the SuperLink (enrolment, renewal, CRL), org admins (CLI)',
    security: 'TLS; renewal over mTLS',
    exposed: 'public',
    flag: '`pollen cert-service --port`',
  },
  {
    component: 'SuperLink',
    name: 'ServerAppIo API',
    port: 9091,
    protocol: 'tcp',
    host: 'superlink',
    from: ['local process'],
    whoConnects: 'the ServerApp process the SuperLink starts',
    security: 'loopback, per-run token',
    exposed: 'loopback',
    flag: '`pollen superlink --serverappio-address`',
  },
  {
    component: 'SuperLink',
    name: 'Fleet API',
    port: 9092,
    protocol: 'tcp',
    host: 'superlink',
    from: ['site'],
    whoConnects: 'SuperNodes (outbound from each site)',
    security: 'mTLS + signed requests',
    exposed: 'vpn',
    flag: '`pollen superlink --fleet-address`',
  },
  {
    component: 'SuperLink',
    name: 'Control API + dashboard',
    port: 9093,
    protocol: 'tcp',
    host: 'superlink',
    from: ['researcher'],
    whoConnects: 'researchers and admins (CLI, browser)',
    security: 'TLS; mTLS or OIDC bearer token',
    exposed: 'public',
    flag: '`pollen superlink --control-address`',
  },
  {
    component: 'SuperNode',
    name: 'ClientAppIo API',
    port: 9094,
    protocol: 'tcp',
    host: 'site',
    from: ['local process'],
    whoConnects: 'the ClientApp process the SuperNode starts',
    security: 'loopback, per-run token',
    exposed: 'loopback',
    flag: '`pollen supernode --clientappio-address`',
  },
  {
    component: 'SuperLink',
    name: 'metrics and health',
    port: 9095,
    protocol: 'tcp',
    host: 'superlink',
    from: ['monitoring'],
    whoConnects: 'Prometheus, `pollen ready`, systemd',
    security: 'plain HTTP, loopback',
    exposed: 'loopback',
    flag: '`pollen superlink --metrics-address`',
  },
  {
    component: 'SuperNode',
    name: 'metrics and health',
    port: 9096,
    protocol: 'tcp',
    host: 'site',
    from: ['monitoring'],
    whoConnects: 'Prometheus, `pollen ready`, systemd',
    security: 'plain HTTP, loopback',
    exposed: 'loopback',
    flag: '`pollen supernode --metrics-address`',
  },
  {
    component: 'Certificate Service',
    name: 'metrics and health',
    port: 9097,
    protocol: 'tcp',
    host: 'cert-service',
    from: ['monitoring'],
    whoConnects: 'Prometheus, `pollen ready`, systemd',
    security: 'plain HTTP, loopback',
    exposed: 'loopback',
    flag: '`pollen cert-service --metrics-address`',
  },
  {
    component: 'WireGuard',
    name: 'VPN hub',
    port: 51820,
    protocol: 'udp',
    host: 'superlink',
    from: ['site'],
    whoConnects: "each organisation's VPN peer",
    security: 'WireGuard (Curve25519 keys per organisation)',
    exposed: 'public',
    flag: '`pollen deploy wireguard --listen-port`',
  },
  {
    component: 'OpenVPN',
    name: 'VPN hub (alternative to WireGuard)',
    port: 1194,
    protocol: 'udp',
    host: 'superlink',
    from: ['site'],
    whoConnects: "each organisation's VPN client",
    security: 'TLS with certificates of a VPN CA',
    exposed: 'public',
    flag: '`port` in the OpenVPN server configuration',
  },
];

/** The port of a named row (so generators never hard-code a number the map already holds). */
export function portOf(component: PortRow['component'], name: string): number {
  const row = PORT_MAP.find((r) => r.component === component && r.name === name);
  if (!row) throw new Error(`no port map row ${component} · ${name}`);
  return row.port;
}

export const FLEET_PORT = portOf('SuperLink', 'Fleet API');
export const CERT_SERVICE_PORT = portOf('Certificate Service', 'enrollment, renewal, CRL, admin API');
export const WIREGUARD_PORT = portOf('WireGuard', 'VPN hub');
export const OPENVPN_PORT = portOf('OpenVPN', 'VPN hub (alternative to WireGuard)');

/** The ops listener's default address per component (`--metrics-address`). */
export function metricsPort(component: 'SuperLink' | 'SuperNode' | 'Certificate Service'): number {
  return portOf(component, 'metrics and health');
}

/** The rows whose listener runs on a host of `role`. */
export function listenersOf(role: HostRole): PortRow[] {
  return PORT_MAP.filter((r) => r.host === role);
}

/** The port map as the Markdown table docs/network.md shows. */
export function portMapTable(rows: readonly PortRow[] = PORT_MAP): string {
  const header = [
    '| component | port | protocol | direction | who connects | TLS / mTLS | exposed | set with |',
    '|---|---|---|---|---|---|---|---|',
  ];
  const line = (r: PortRow) =>
    `| ${r.component} · ${r.name} | ${r.port} | ${r.protocol} | ${r.from.join(', ')} → ${r.host} | ${r.whoConnects} | ${r.security} | ${r.exposed} | ${r.flag} |`;
  return [...header, ...rows.map(line)].join('\n');
}
