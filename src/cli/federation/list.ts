import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, type Output } from '../output.js';
import { federationJson, federationLine } from './format.js';

export interface FederationListOptions {
  config?: string;
  superlink?: string;
}

/** `pollen federation list`: the federations on the SuperLink that the caller belongs to. */
export async function federationList(o: FederationListOptions, out: Output): Promise<void> {
  await withControl(undefined, o, async (s) => {
    const res = await rpc(s.federations.listFederations({}));
    const federations = res.federations.map(federationJson);
    out.result({ superlink: s.connection.name, federations }, (d) => [
      `${bold(`${d.federations.length} federation(s)`)} on ${d.superlink}`,
      ...d.federations.map((f) => `  ${federationLine(f)}`),
    ]);
  });
}
