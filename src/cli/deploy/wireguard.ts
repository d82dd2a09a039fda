import { isIPv4 } from 'node:net';
import { capacity, WIREGUARD_DEFAULTS, wireguardFiles } from '../../deploy/wireguard.js';
import { PollenError } from '../../errors.js';
import type { Output } from '../output.js';
import { type DeployOutputOptions, portArgument, writeDeployFiles } from './write.js';

export interface DeployWireGuardOptions extends DeployOutputOptions {
  org: string[];
  endpoint: string;
  listenPort?: string;
  network?: string;
}

const invalid = (message: string, hint: string) => new PollenError('INVALID_ARGUMENT', message, { hint });

/** Organisation names become folder names: letters, digits, `.`, `_`, `-`, each once. */
export function orgNames(orgs: string[]): string[] {
  if (orgs.length === 0) throw new PollenError('USAGE', 'Name at least one organisation with --org NAME');
  for (const org of orgs)
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(org))
      throw invalid(
        `--org "${org}" is not a usable name`,
        'Use letters, digits, ".", "_" and "-" (it names a folder).',
      );
  const twice = orgs.find((org, i) => orgs.indexOf(org) !== i);
  if (twice) throw invalid(`--org ${twice} is given twice`, 'Name each organisation once.');
  return orgs;
}

/** An IPv4 network with room for the hub and every organisation. */
function network(value: string, orgs: number): string {
  const [base, bits, extra] = value.split('/');
  if (!isIPv4(base ?? '') || !/^\d+$/.test(bits ?? '') || Number(bits) > 30 || extra !== undefined)
    throw invalid(
      `--network ${value} is not an IPv4 network`,
      'Give a private IPv4 network with its prefix, e.g. 10.77.0.0/24.',
    );
  if (capacity(value) < orgs)
    throw invalid(
      `--network ${value} holds ${capacity(value)} organisations, not ${orgs}`,
      'Give a larger network (a shorter prefix).',
    );
  return value;
}

/** `pollen deploy wireguard`: the hub's and each organisation's WireGuard configuration. */
export async function deployWireGuard(o: DeployWireGuardOptions, out: Output): Promise<void> {
  const orgs = orgNames(o.org);
  const plan = wireguardFiles({
    orgs,
    endpoint: o.endpoint,
    listenPort: o.listenPort ? portArgument('--listen-port', o.listenPort) : WIREGUARD_DEFAULTS.listenPort,
    network: network(o.network ?? WIREGUARD_DEFAULTS.network, orgs.length),
    interface: WIREGUARD_DEFAULTS.interface,
  });
  writeDeployFiles('wireguard', o, plan.files, out, [
    `hub ${plan.hub.address}: SuperNodes reach the Fleet API at ${plan.hub.address}:9092 (the SuperLink's certificate must name it: pollen token generate --server --host ${plan.hub.address} …)`,
    ...plan.orgs.map((org) => `${org.name}: ${org.address} (public key ${org.publicKey})`),
    'give each organisation its own folder only, over a channel you trust; the hub folder stays on the SuperLink host',
  ]);
}
