import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, dim, type Output } from '../output.js';
import { federationJson } from './format.js';

export interface FederationCreateOptions {
  name: string;
  description?: string;
  /** Organisations whose nodes serve the federation without being added one by one. */
  nodeOrg: string[];
  config?: string;
  superlink?: string;
}

/** `pollen federation create`: a new federation on the SuperLink, the caller its first lead. */
export async function federationCreate(o: FederationCreateOptions, out: Output): Promise<void> {
  await withControl(undefined, o, async (s) => {
    const res = await rpc(
      s.federations.createFederation({ name: o.name, description: o.description ?? '', nodeOrgs: o.nodeOrg }),
    );
    const federation = federationJson(res.federation!);
    out.result({ superlink: s.connection.name, federation }, (d) => [
      `${bold('created')} federation ${bold(d.federation.name)} on ${d.superlink}${d.federation.myRole ? ` (your role: ${d.federation.myRole})` : ''}`,
      d.federation.nodeOrgs.length
        ? `  nodes of ${d.federation.nodeOrgs.join(', ')} serve it; others join by registration`
        : `  nodes join it by registration: pollen supernode register KEY.pub ${d.federation.name}`,
      dim(`  invite people: pollen federation invite ${d.federation.name} --email E --role member`),
    ]);
  });
}
