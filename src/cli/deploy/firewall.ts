import { isIP } from 'node:net';
import { admittedPorts, FIREWALL_FILE, firewallFiles, type VpnKind } from '../../deploy/firewall.js';
import { HOST_ROLES, type HostRole } from '../../deploy/port-map.js';
import { PollenError } from '../../errors.js';
import type { Output } from '../output.js';
import { type DeployOutputOptions, writeDeployFiles } from './write.js';

export interface DeployFirewallOptions extends DeployOutputOptions {
  /** Comma-separated roles. */
  role: string;
  vpn?: string;
  vpnInterface?: string;
  /** Comma-separated CIDRs, `any`; `false` with --no-ssh. */
  ssh: string | false;
  researchers?: string;
  restrictOutbound?: boolean;
}

const DEFAULT_INTERFACE: Record<VpnKind, string> = { wireguard: 'wg0', openvpn: 'tun0' };

function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function roles(value: string): HostRole[] {
  const names = list(value);
  const unknown = names.find((n) => !(HOST_ROLES as readonly string[]).includes(n));
  if (unknown !== undefined || names.length === 0)
    throw new PollenError('INVALID_ARGUMENT', `Unknown host role "${unknown ?? value}"`, {
      hint: `Give --role ${HOST_ROLES.join(', ')} (several, comma-separated, for a host that plays them all).`,
    });
  return names as HostRole[];
}

/** Addresses or CIDRs, checked here: nft's own message would name a line of the generated file. */
function cidrs(flag: string, value: string, allowAny = false): string[] {
  const items = list(value);
  for (const item of items) {
    if (allowAny && item === 'any') continue;
    const [address, bits, extra] = item.split('/');
    const family = isIP(address ?? '');
    const max = family === 4 ? 32 : 128;
    const okBits = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= max);
    if (family === 0 || !okBits || extra !== undefined)
      throw new PollenError('INVALID_ARGUMENT', `${flag}: "${item}" is not an IP address or CIDR`, {
        hint: `Give addresses or networks, comma-separated, e.g. ${flag} 203.0.113.0/24,2001:db8::/32${allowAny ? ' (or any)' : ''}.`,
      });
  }
  return items;
}

function vpn(o: DeployFirewallOptions): { kind: VpnKind; interface: string } | undefined {
  if (o.vpn === undefined) {
    if (o.vpnInterface !== undefined)
      throw new PollenError('USAGE', '--vpn-interface needs --vpn wireguard|openvpn');
    return undefined;
  }
  if (o.vpn !== 'wireguard' && o.vpn !== 'openvpn')
    throw new PollenError('INVALID_ARGUMENT', `Unknown VPN "${o.vpn}"`, {
      hint: 'Give --vpn wireguard or --vpn openvpn.',
    });
  return { kind: o.vpn, interface: o.vpnInterface ?? DEFAULT_INTERFACE[o.vpn] };
}

/** `pollen deploy firewall`: the nftables ruleset of a host, from the port map. */
export async function deployFirewall(o: DeployFirewallOptions, out: Output): Promise<void> {
  const vpnOption = vpn(o);
  const options = {
    roles: roles(o.role),
    ...(vpnOption && { vpn: vpnOption }),
    sshFrom: o.ssh === false ? [] : cidrs('--ssh', o.ssh, true),
    researchersFrom: o.researchers ? cidrs('--researchers', o.researchers) : [],
    restrictOutbound: o.restrictOutbound ?? false,
  };
  const admitted = admittedPorts(options).map((p) => `admits ${p.port}/${p.protocol} (${p.what})`);
  writeDeployFiles('firewall', o, firewallFiles(options), out, [
    ...admitted,
    `check: nft -c -f ${FIREWALL_FILE}; apply: nft -f ${FIREWALL_FILE} (persist: include it from /etc/nftables.conf)`,
  ]);
}
