import { isIP } from 'node:net';
import { PollenError } from '../../errors.js';
import { isHostname } from '../../pki/names.js';
import { ENDPOINT_SCHEMES, type EndpointScheme, type KitType } from './vocabulary.js';

export interface Endpoint {
  scheme: EndpointScheme;
  host: string;
  port: number;
  adminPort: number | null;
}

export function parsePort(text: string, what: string): number {
  if (!/^[0-9]{1,5}$/.test(text))
    throw new PollenError('INVALID_ARGUMENT', `Invalid ${what} "${text}": use a number from 1 to 65535`);
  const port = Number(text);
  if (port < 1 || port > 65535)
    throw new PollenError('INVALID_ARGUMENT', `Invalid ${what} ${port}: use a number from 1 to 65535`);
  return port;
}

export function checkHost(host: string): void {
  if (!host || !(isIP(host) || isHostname(host)))
    throw new PollenError('INVALID_ARGUMENT', `Invalid host "${host}" in the endpoint`, {
      hint: 'Use a DNS name or an IP address (IPv6 in brackets: grpcs://[::1]:9092).',
    });
}

/**
 * Parse `SCHEME://HOST:PORT[:ADMIN_PORT]` (IPv6 hosts in brackets). Servers and admins need the
 * admin port (the Control API): `grpcs://server.example.com:9092:9093`.
 */
export function parseEndpoint(text: string, type?: KitType): Endpoint {
  const usage = {
    hint: 'Give the endpoint as SCHEME://HOST:PORT[:ADMIN_PORT] with SCHEME grpc, grpcs, https or tcp, e.g. grpcs://server.example.com:9092:9093.',
  };
  const m =
    /^([a-z][a-z0-9+.-]*):\/\/(\[[0-9A-Fa-f:.]+\]|[^:/[\]\s]+)(?::([^:/\s]*))?(?::([^:/\s]*))?\/?$/.exec(
      text.trim(),
    );
  if (!m) throw new PollenError('INVALID_ARGUMENT', `Invalid endpoint "${text}"`, usage);
  const [, scheme = '', rawHost = '', portText, adminText] = m;
  if (!(ENDPOINT_SCHEMES as readonly string[]).includes(scheme))
    throw new PollenError(
      'INVALID_ARGUMENT',
      `Unsupported scheme "${scheme}" in the endpoint "${text}"`,
      usage,
    );
  const host = rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost;
  if (rawHost.startsWith('[') && isIP(host) !== 6)
    throw new PollenError('INVALID_ARGUMENT', `Invalid IPv6 address "${rawHost}" in the endpoint`, usage);
  checkHost(host);
  if (portText === undefined)
    throw new PollenError('INVALID_ARGUMENT', `The endpoint "${text}" has no port`, usage);
  const port = parsePort(portText, 'port');
  const adminPort = adminText === undefined ? null : parsePort(adminText, 'admin port');
  if ((type === 'server' || type === 'admin') && adminPort === null)
    throw new PollenError(
      'INVALID_ARGUMENT',
      `A ${type} endpoint needs the admin port: SCHEME://HOST:PORT:ADMIN_PORT`,
      {
        hint: `For example ${scheme}://${rawHost}:${port}:${port === 65535 ? port - 1 : port + 1}.`,
      },
    );
  if (adminPort !== null && adminPort === port)
    throw new PollenError('INVALID_ARGUMENT', 'The admin port must differ from the port', usage);
  return { scheme: scheme as EndpointScheme, host, port, adminPort };
}

export function formatEndpoint(e: Endpoint): string {
  const host = isIP(e.host) === 6 ? `[${e.host}]` : e.host;
  return `${e.scheme}://${host}:${e.port}${e.adminPort === null ? '' : `:${e.adminPort}`}`;
}
