import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, type Output } from '../output.js';

export interface FederationRemoveOptions {
  name: string;
  /** The member as `members` names them (user:…, service_account:…, certificate:…). */
  subject: string;
  config?: string;
  superlink?: string;
}

/** `pollen federation remove`: take a member out of a federation (their other federations stay). */
export async function federationRemove(o: FederationRemoveOptions, out: Output): Promise<void> {
  await withControl({ federation: o.name }, o, async (s) => {
    await rpc(s.federations.removeMember({ federation: o.name, subject: o.subject }));
    out.result(
      { superlink: s.connection.name, federation: o.name, removed: o.subject },
      (d) => `removed ${bold(d.removed)} from ${d.federation}`,
    );
  });
}
