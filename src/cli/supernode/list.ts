import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { nodeJson } from '../federation/format.js';
import { bold, dim, type Output } from '../output.js';

export interface SuperNodeListOptions {
  federation?: string;
  config?: string;
}

/** How `supernode list` shows a key's site binding. */
function siteText(n: { registered: boolean; site: string | null; siteBoundBy: string | null }): string {
  if (!n.site) return n.registered ? `  site ${dim('(bound on first use)')}` : '';
  const how = n.siteBoundBy?.startsWith('admin:') ? `named by ${n.siteBoundBy.slice(6)}` : 'first use';
  return `  site ${n.site} ${dim(`(${how})`)}`;
}

/** `pollen supernode list`: the federation's nodes, their status and the site each key is bound to. */
export async function superNodeList(o: SuperNodeListOptions, out: Output): Promise<void> {
  await withControl(o.federation, o, async (s) => {
    const res = await rpc(s.control.listNodes({ federation: s.federation }));
    const nodes = res.nodes.map((n) => ({
      ...nodeJson(n),
      registered: n.registered,
      siteBoundBy: n.siteBoundBy || null,
      siteBoundAt: n.siteBoundAt ? new Date(Number(n.siteBoundAt)).toISOString() : null,
    }));
    out.result(
      { superlink: s.connection.name, federation: s.federation, nodeAuth: res.nodeAuth, nodes },
      (d) => [
        `${bold(`${d.nodes.length} node(s)`)} in federation ${d.federation} on ${d.superlink}${d.nodeAuth ? ' (registered keys only)' : ''}`,
        ...d.nodes.map(
          (n) =>
            `  ${n.nodeId}  ${n.status.padEnd(10)} ${n.name}${siteText(n)}${n.federations.length ? `  also serves ${n.federations.join(', ')}` : ''}${n.lastSeenAt ? dim(`  last seen ${n.lastSeenAt}`) : ''}`,
        ),
      ],
    );
  });
}
