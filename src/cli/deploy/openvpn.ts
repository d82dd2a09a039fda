import { OPENVPN_DEFAULTS, openvpnFiles } from '../../deploy/openvpn.js';
import type { Output } from '../output.js';
import { orgNames, vpnNetwork } from './wireguard.js';
import { type DeployOutputOptions, portArgument, writeDeployFiles } from './write.js';

export interface DeployOpenVpnOptions extends DeployOutputOptions {
  org: string[];
  endpoint: string;
  port?: string;
  network?: string;
}

/** `pollen deploy openvpn`: the hub's and each organisation's OpenVPN configuration. */
export async function deployOpenVpn(o: DeployOpenVpnOptions, out: Output): Promise<void> {
  const orgs = orgNames(o.org);
  const plan = openvpnFiles({
    ...OPENVPN_DEFAULTS,
    orgs,
    endpoint: o.endpoint,
    port: o.port ? portArgument('--port', o.port) : OPENVPN_DEFAULTS.port,
    network: vpnNetwork(o.network ?? OPENVPN_DEFAULTS.network, orgs.length),
    now: new Date(),
  });
  writeDeployFiles('openvpn', o, plan.files, out, [
    `hub ${plan.hub.address}: SuperNodes reach the Fleet API at ${plan.hub.address}:9092 (the SuperLink's certificate must name it: pollen token generate --server --host ${plan.hub.address} …)`,
    ...plan.orgs.map((org) => `${org.name}: ${org.address} (certificate ${org.fingerprint})`),
    'give each organisation its own folder only, over a channel you trust; the hub folder (with ccd/) stays on the SuperLink host',
  ]);
}
