import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, type Output } from '../output.js';

export interface FederationNodeOptions {
  name: string;
  nodeId: string;
  config?: string;
  superlink?: string;
}

/** `pollen federation add-node`: a known node serves one more federation. */
export async function federationAddNode(o: FederationNodeOptions, out: Output): Promise<void> {
  await withControl({ federation: o.name }, o, async (s) => {
    await rpc(s.federations.addFederationNode({ federation: o.name, nodeId: o.nodeId }));
    out.result(
      { superlink: s.connection.name, federation: o.name, nodeId: o.nodeId, serves: true },
      (d) => `node ${bold(d.nodeId)} now serves ${d.federation}`,
    );
  });
}

/** `pollen federation remove-node`: the node stops serving this federation (its others stay). */
export async function federationRemoveNode(o: FederationNodeOptions, out: Output): Promise<void> {
  await withControl({ federation: o.name }, o, async (s) => {
    await rpc(s.federations.removeFederationNode({ federation: o.name, nodeId: o.nodeId }));
    out.result(
      { superlink: s.connection.name, federation: o.name, nodeId: o.nodeId, serves: false },
      (d) => `node ${bold(d.nodeId)} no longer serves ${d.federation}`,
    );
  });
}
