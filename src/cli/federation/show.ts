import { PollenError } from '../../errors.js';
import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, dim, type Output } from '../output.js';
import { runJson, statusText } from '../runs/format.js';
import {
  federationJson,
  invitationJson,
  invitationLine,
  memberJson,
  memberLine,
  nodeJson,
  nodeLine,
} from './format.js';

export interface FederationShowOptions {
  name: string;
  /** Most recent runs shown (default 20). */
  runs?: string;
  config?: string;
  superlink?: string;
}

/** `pollen federation show`: a federation as its dashboard page shows it. */
export async function federationShow(o: FederationShowOptions, out: Output): Promise<void> {
  const runLimit = o.runs === undefined ? 0 : Number(o.runs);
  if (!Number.isInteger(runLimit) || runLimit < 0 || runLimit > 1000)
    throw new PollenError('INVALID_ARGUMENT', `--runs ${o.runs}: give a whole number from 1 to 1000`);
  await withControl({ federation: o.name }, o, async (s) => {
    const res = await rpc(s.federations.getFederation({ name: o.name, runLimit }));
    const result = {
      superlink: s.connection.name,
      federation: federationJson(res.federation!),
      members: res.members.map(memberJson),
      nodes: res.nodes.map(nodeJson),
      runs: res.runs.map(runJson),
      invitations: res.invitations.map(invitationJson),
    };
    out.result(result, (d) => {
      const f = d.federation;
      const online = d.nodes.filter((n) => n.status === 'online').length;
      return [
        `${bold(`federation ${f.name}`)} on ${d.superlink}${f.description ? `  ${dim(f.description)}` : ''}`,
        `  created ${f.createdAt ?? '?'} by ${f.createdBy ?? '?'}${f.myRole ? `; your role: ${f.myRole}` : ''}`,
        `  nodes join by ${f.nodeOrgs.length ? `organisation (${f.nodeOrgs.join(', ')}) or ` : ''}registration`,
        '',
        bold(`members (${d.members.length})`),
        ...d.members.map(memberLine),
        '',
        bold(`nodes (${d.nodes.length}, ${online} online)`),
        ...(d.nodes.length
          ? d.nodes.map(nodeLine)
          : [dim(`  none yet: pollen supernode register KEY.pub ${f.name}`)]),
        '',
        bold(`runs (${d.runs.length} most recent)`),
        ...(d.runs.length
          ? d.runs.map(
              (r) =>
                `  ${r.runId}  ${statusText(r).padEnd(18)} ${(r.app?.name ?? '').padEnd(20)} ${r.createdBy}  ${dim(r.createdAt)}`,
            )
          : [dim(`  none yet: pollen run APP_DIR ${f.name}`)]),
        ...(d.invitations.length
          ? ['', bold(`pending invitations (${d.invitations.length})`), ...d.invitations.map(invitationLine)]
          : []),
      ];
    });
  });
}
