/**
 * `pollen demo --oidc`, the people side: the admin creates the demo's federation over the
 * Federations service and makes the sites' nodes serve it, then invites the researcher by the
 * e-mail the OpenID Provider verified; once logged in she accepts, and her role in that
 * federation (not a role of her own at the provider) is what lets her start the run there. Each
 * step is the `pollen federation …` command an operator types.
 */
import { PollenError } from '../errors.js';
import type { Processes } from './processes.js';
import { DEMO_RESEARCHER } from './researcher.js';

/** The federation the researcher is invited into and runs in. */
export const DEMO_FEDERATION = 'demo-study';
/** Her role in it. */
const ROLE = 'lead';

/** What the demo's summary says about the federation and her membership. */
export interface StudySummary {
  name: string;
  /** The nodes that serve it (the demo's sites). */
  nodes: string[];
  invitation: { id: string; email: string; role: string; status: string };
  /** Who accepted the invitation, as the SuperLink names the member. */
  member: { subject: string; email: string | null; role: string };
}

interface Narration {
  line(text: string): void;
}

const json = <T>(text: string): T => JSON.parse(text) as T;

/** The admin creates the federation and adds each site's node to it (they keep serving `default`). */
export async function createStudy(
  px: Processes,
  r: Narration,
  nodes: { name: string; nodeId: string }[],
): Promise<Pick<StudySummary, 'name' | 'nodes'>> {
  const { federation } = json<{ federation: { name: string; myRole: string | null } }>(
    (
      await px.must([
        'federation',
        'create',
        DEMO_FEDERATION,
        '--description',
        'MNIST across the demo sites',
        '--json',
      ])
    ).stdout,
  );
  r.line(
    `federation ${federation.name} created on SuperLink demo (the admin's role in it: ${federation.myRole})`,
  );
  // Independent additions: all at once.
  await Promise.all(
    nodes.map((n) => px.must(['federation', 'add-node', DEMO_FEDERATION, n.nodeId, '--json'])),
  );
  r.line(`${nodes.map((n) => n.name).join(', ')} serve ${DEMO_FEDERATION}; its runs reach only them`);
  return { name: federation.name, nodes: nodes.map((n) => n.nodeId) };
}

/** The admin invites the researcher by e-mail; the single-use code goes to her alone. */
export async function inviteResearcher(
  px: Processes,
  r: Narration,
): Promise<{ code: string; invitation: StudySummary['invitation'] }> {
  const { code, invitation } = json<{
    code: string;
    invitation: { id: string; email: string; role: string; status: string };
  }>(
    (
      await px.must([
        'federation',
        'invite',
        DEMO_FEDERATION,
        '--email',
        DEMO_RESEARCHER.email,
        '--role',
        ROLE,
        '--expires',
        '1h',
        '--json',
      ])
    ).stdout,
  );
  r.line(
    `invitation ${invitation.id} for ${invitation.email} as ${invitation.role}: single-use, bound to that verified e-mail, expires in 1 h`,
  );
  return { code, invitation };
}

/** The researcher, logged in, accepts the code: she is a member of the federation from now on. */
export async function acceptInvitation(
  px: Processes,
  r: Narration,
  code: string,
  researcherEnv: NodeJS.ProcessEnv,
): Promise<StudySummary['member']> {
  const { federation, member } = json<{
    federation: { name: string };
    member: { subject: string; email: string | null; role: string };
  }>((await px.must(['federation', 'accept', code, '--json'], researcherEnv)).stdout);
  if (federation.name !== DEMO_FEDERATION || member.role !== ROLE)
    throw new PollenError(
      'INTERNAL',
      `The invitation made her ${member.role} of ${federation.name}, not ${ROLE} of ${DEMO_FEDERATION}`,
    );
  r.line(`${member.email ?? member.subject} accepted: ${member.role} of ${federation.name}`);
  return { subject: member.subject, email: member.email, role: member.role };
}
