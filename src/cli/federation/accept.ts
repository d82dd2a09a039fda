import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, dim, type Output } from '../output.js';
import { federationJson, memberJson } from './format.js';

export interface FederationAcceptOptions {
  code: string;
  config?: string;
  superlink?: string;
}

/** `pollen federation accept`: join the federation an invitation names, as the identity it names. */
export async function federationAccept(o: FederationAcceptOptions, out: Output): Promise<void> {
  await withControl(undefined, o, async (s) => {
    const res = await rpc(s.federations.acceptInvitation({ code: o.code.trim() }));
    const federation = federationJson(res.federation!);
    const member = memberJson(res.member!);
    out.result({ superlink: s.connection.name, federation, member }, (d) => [
      `${bold('joined')} federation ${bold(d.federation.name)} on ${d.superlink} as ${d.member.role}`,
      dim(`  see it: pollen federation show ${d.federation.name}`),
      dim(`  run on it: pollen run APP_DIR ${d.federation.name}`),
    ]);
  });
}
