/** Federations, members and invitations as the CLI shows them (text and --json). */
import type { Federation, Invitation, Member } from '../../gen/pollen/v1/federations_pb.js';
import type { Node } from '../../gen/pollen/v1/records_pb.js';
import { dim } from '../output.js';

const iso = (ms: bigint) => (ms ? new Date(Number(ms)).toISOString() : null);

export function federationJson(f: Federation) {
  return {
    name: f.name,
    description: f.description || null,
    nodeOrgs: f.nodeOrgs,
    createdBy: f.createdBy || null,
    createdAt: iso(f.createdAt),
    myRole: f.myRole || null,
    members: f.memberCount,
    nodes: f.nodeCount,
  };
}
export type FederationJson = ReturnType<typeof federationJson>;

export function memberJson(m: Member) {
  return {
    subject: m.subject,
    name: m.name || null,
    email: m.email || null,
    org: m.org || null,
    role: m.role,
    addedBy: m.addedBy || null,
    addedAt: iso(m.addedAt),
  };
}
export type MemberJson = ReturnType<typeof memberJson>;

export function invitationJson(i: Invitation) {
  return {
    id: i.id,
    federation: i.federation,
    email: i.email || null,
    subject: i.subject || null,
    role: i.role,
    status: i.status,
    createdBy: i.createdBy,
    createdAt: iso(i.createdAt),
    expiresAt: iso(i.expiresAt),
  };
}
export type InvitationJson = ReturnType<typeof invitationJson>;

export function nodeJson(n: Node) {
  return {
    nodeId: n.nodeId,
    name: n.name,
    status: n.status,
    site: n.site || null,
    lastSeenAt: iso(n.lastSeenAt),
    federations: n.federations,
  };
}
export type NodeJson = ReturnType<typeof nodeJson>;

/** One line: name, the caller's role, counts, description. */
export function federationLine(f: FederationJson): string {
  return [
    f.name.padEnd(20),
    (f.myRole ?? dim(f.name === 'default' ? '(your roles)' : '(operator)')).padEnd(14),
    `${f.members} member(s)`.padEnd(13),
    `${f.nodes} node(s)`.padEnd(11),
    f.description ? dim(f.description) : '',
  ]
    .join(' ')
    .trimEnd();
}

/** One line: who, role, organisation. */
export function memberLine(m: MemberJson): string {
  const who = m.email ? `${m.name ?? m.subject} <${m.email}>` : (m.name ?? m.subject);
  return `  ${m.role.padEnd(14)} ${who}  ${dim(m.subject)}${m.org ? `  org ${m.org}` : ''}`;
}

/** One line: id, invitee, role, status, expiry. */
export function invitationLine(i: InvitationJson): string {
  return `  ${i.id}  ${(i.email ?? i.subject ?? '').padEnd(28)} ${i.role.padEnd(10)} ${i.status.padEnd(9)} ${dim(`expires ${i.expiresAt}`)}`;
}

/** One line: node id, status, name, site, last seen. */
export function nodeLine(n: NodeJson): string {
  return `  ${n.nodeId}  ${n.status.padEnd(10)} ${n.name}${n.site ? `  site ${n.site}` : ''}${n.lastSeenAt ? dim(`  last seen ${n.lastSeenAt}`) : ''}`;
}
