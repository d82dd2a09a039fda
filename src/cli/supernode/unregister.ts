import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import type { Output } from '../output.js';

export interface SuperNodeUnregisterOptions {
  nodeId: string;
  federation?: string;
  config?: string;
}

/** `pollen supernode unregister`: refuse a node's key from now on, with no SuperLink restart. */
export async function superNodeUnregister(o: SuperNodeUnregisterOptions, out: Output): Promise<void> {
  await withControl(o.federation, o, async (s) => {
    await rpc(s.control.unregisterNode({ nodeId: o.nodeId }));
    out.result({ nodeId: o.nodeId, unregistered: true }, (d) => `unregistered ${d.nodeId}`);
  });
}
