import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, type Output } from '../output.js';
import { memberJson, memberLine } from './format.js';

export interface FederationMembersOptions {
  name: string;
  config?: string;
  superlink?: string;
}

/** `pollen federation members`: who belongs to a federation, with their role in it. */
export async function federationMembers(o: FederationMembersOptions, out: Output): Promise<void> {
  await withControl({ federation: o.name }, o, async (s) => {
    const res = await rpc(s.federations.listMembers({ federation: o.name }));
    const members = res.members.map(memberJson);
    out.result({ superlink: s.connection.name, federation: o.name, members }, (d) => [
      `${bold(`${d.members.length} member(s)`)} of ${d.federation}`,
      ...d.members.map(memberLine),
    ]);
  });
}
