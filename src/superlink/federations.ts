/**
 * Federations on one SuperLink: each has members (people and service accounts, one role each,
 * valid in that federation only) and the nodes that serve it. The built-in `default` is not
 * stored: every node serves it and callers' own roles govern it.
 *
 * A node serves a federation when it was added to it (registration or AddFederationNode), or when
 * the organisation (`O=`) of its client certificate is one of the federation's `node_orgs`.
 *
 * One SuperLink process owns the store, so federations, members and node lists are kept in memory
 * (every Control call and every instruction pushed asks them) and written through on each change.
 */
import { PollenError } from '../errors.js';
import { type Identity, isRole, ROLES, type Role } from '../identity/identity.js';
import { assertValidName, isOrgName } from '../pki/names.js';
import { isUniqueViolation } from '../store/database.js';
import type { NodeEntry } from './node-registry.js';
import type { LinkDb, Tx } from './state-common.js';

/** Served by every node, governed by callers' own roles; never stored, never created. */
export const DEFAULT_FEDERATION = 'default';

export interface Federation {
  name: string;
  description: string;
  /** Nodes whose certificate names one of these organisations serve it. */
  nodeOrgs: string[];
  createdBy: string;
  createdAt: number;
}

export interface Member {
  federation: string;
  /** `KIND:SUBJECT` (memberSubject). */
  subject: string;
  name: string;
  email: string | undefined;
  org: string | undefined;
  role: Role;
  addedBy: string;
  addedAt: number;
}

export interface FederationNode {
  nodeId: string;
  addedBy: string;
  addedAt: number;
}

export interface CreateFederationInput {
  name: string;
  description?: string;
  nodeOrgs?: readonly string[];
  /** The creator: a member with the role `project_admin` from the start. */
  by: Identity;
}

/** How a member is named: the identity's kind and subject, as WhoAmI shows them. */
export function memberSubject(who: Pick<Identity, 'kind' | 'subject'>): string {
  return `${who.kind}:${who.subject}`;
}

const MAX_DESCRIPTION = 1_000;
const MAX_NODE_ORGS = 64;

/** A federation's name: a certificate-style name, not `default` (which exists already). */
export function assertFederationName(name: string): void {
  assertValidName(name);
  if (name === DEFAULT_FEDERATION)
    throw new PollenError('FEDERATION_NAME_RESERVED', 'The federation `default` exists on every SuperLink', {
      data: { name },
    });
}

export function federationNotFound(name: string): PollenError {
  // The catalogue's hint is about local connection entries; on the SuperLink it means this.
  return new PollenError('FEDERATION_NOT_FOUND', `No federation ${name} that you belong to`, {
    data: { federation: name },
    hint: '`pollen federation list` shows the federations you belong to; to join one, ask its admins for an invitation.',
  });
}

export class Federations {
  private readonly byName = new Map<string, Federation>();
  /** Federation → member subject → member. */
  private readonly members = new Map<string, Map<string, Member>>();
  /** Federation → node id → how it was added. */
  private readonly nodes = new Map<string, Map<string, FederationNode>>();

  constructor(
    private readonly db: LinkDb,
    private readonly now: () => number,
  ) {}

  async load(): Promise<void> {
    this.byName.clear();
    this.members.clear();
    this.nodes.clear();
    for (const r of await this.db.selectFrom('federations').selectAll().execute())
      this.byName.set(r.name, {
        name: r.name,
        description: r.description,
        nodeOrgs: JSON.parse(r.node_orgs) as string[],
        createdBy: r.created_by,
        createdAt: Number(r.created_at),
      });
    for (const r of await this.db.selectFrom('federation_members').selectAll().execute())
      if (isRole(r.role))
        this.remember({
          federation: r.federation,
          subject: r.subject,
          name: r.name,
          email: r.email ?? undefined,
          org: r.org ?? undefined,
          role: r.role,
          addedBy: r.added_by,
          addedAt: Number(r.added_at),
        });
    for (const r of await this.db.selectFrom('federation_nodes').selectAll().execute())
      this.nodeMap(r.federation).set(r.node_id, {
        nodeId: r.node_id,
        addedBy: r.added_by,
        addedAt: Number(r.added_at),
      });
  }

  /** Create a federation; its creator becomes its first member (role `project_admin`). */
  async create(input: CreateFederationInput): Promise<Federation> {
    assertFederationName(input.name);
    const description = (input.description ?? '').trim();
    if (description.length > MAX_DESCRIPTION || /\p{Cc}/u.test(description.replace(/\n/g, '')))
      throw new PollenError(
        'INVALID_ARGUMENT',
        `A description is at most ${MAX_DESCRIPTION} characters, without control characters`,
      );
    const nodeOrgs = [...new Set((input.nodeOrgs ?? []).map((o) => o.trim()).filter(Boolean))];
    const bad = nodeOrgs.find((o) => !isOrgName(o));
    if (bad !== undefined || nodeOrgs.length > MAX_NODE_ORGS)
      throw new PollenError(
        'INVALID_ARGUMENT',
        bad !== undefined
          ? `Not an organisation name: ${JSON.stringify(bad.slice(0, 80))}`
          : `At most ${MAX_NODE_ORGS} node organisations`,
        { hint: 'Give the organisations as their certificates name them (O=), e.g. "Alpha Clinic".' },
      );
    if (this.byName.has(input.name)) throw exists(input.name);
    const at = this.now();
    const federation: Federation = {
      name: input.name,
      description,
      nodeOrgs,
      createdBy: input.by.name,
      createdAt: at,
    };
    const creator = memberOf(input.by, input.name, 'project_admin', input.by.name, at);
    try {
      await this.db.transaction().execute(async (tx) => {
        await tx
          .insertInto('federations')
          .values({
            name: federation.name,
            description,
            node_orgs: JSON.stringify(nodeOrgs),
            created_by: federation.createdBy,
            created_at: at,
          })
          .execute();
        await this.writeMember(tx, creator);
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw exists(input.name);
      throw e;
    }
    this.byName.set(federation.name, federation);
    this.remember(creator);
    return copy(federation);
  }

  get(name: string): Federation | undefined {
    const f = this.byName.get(name);
    return f && copy(f);
  }

  /** Every stored federation, by name. */
  list(): Federation[] {
    return [...this.byName.values()].map(copy).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** A federation's members, by subject. */
  membersOf(federation: string): Member[] {
    return [...(this.members.get(federation)?.values() ?? [])]
      .map((m) => ({ ...m }))
      .sort((a, b) => (a.subject < b.subject ? -1 : 1));
  }

  /** The membership of `who` in a federation, if any. */
  membership(federation: string, who: Pick<Identity, 'kind' | 'subject'>): Member | undefined {
    const m = this.members.get(federation)?.get(memberSubject(who));
    return m && { ...m };
  }

  /** Add a member (or change the role of one), inside the caller's transaction; `remember` after commit. */
  async writeMember(tx: Tx, m: Member): Promise<void> {
    const row = {
      federation: m.federation,
      subject: m.subject,
      name: m.name,
      email: m.email ?? null,
      org: m.org ?? null,
      role: m.role,
      added_by: m.addedBy,
      added_at: m.addedAt,
    };
    const { federation: _, subject: __, ...changes } = row;
    await tx
      .insertInto('federation_members')
      .values(row)
      .onConflict((oc) => oc.columns(['federation', 'subject']).doUpdateSet(changes))
      .execute();
  }

  /** A member written by `writeMember`, now committed. */
  remember(m: Member): void {
    const map = this.members.get(m.federation) ?? new Map<string, Member>();
    this.members.set(m.federation, map);
    map.set(m.subject, { ...m });
  }

  /** Take a member out (MEMBER_NOT_FOUND). */
  async removeMember(federation: string, subject: string): Promise<Member> {
    const m = this.members.get(federation)?.get(subject);
    if (!m)
      throw new PollenError('MEMBER_NOT_FOUND', `${subject} is not a member of federation ${federation}`, {
        data: { federation, subject },
      });
    await this.db
      .deleteFrom('federation_members')
      .where('federation', '=', federation)
      .where('subject', '=', subject)
      .execute();
    this.members.get(federation)?.delete(subject);
    return { ...m };
  }

  /** Add a node (adding it again changes nothing). */
  async addNode(federation: string, nodeId: string, by: string): Promise<void> {
    if (this.nodes.get(federation)?.has(nodeId)) return;
    const added = { nodeId, addedBy: by, addedAt: this.now() };
    await this.db
      .insertInto('federation_nodes')
      .values({ federation, node_id: nodeId, added_by: by, added_at: added.addedAt })
      .onConflict((oc) => oc.columns(['federation', 'node_id']).doNothing())
      .execute();
    this.nodeMap(federation).set(nodeId, added);
  }

  /** Take a node out; false when it was not added (it may still serve by its organisation). */
  async removeNode(federation: string, nodeId: string): Promise<boolean> {
    if (!this.nodes.get(federation)?.has(nodeId)) return false;
    await this.db
      .deleteFrom('federation_nodes')
      .where('federation', '=', federation)
      .where('node_id', '=', nodeId)
      .execute();
    this.nodes.get(federation)?.delete(nodeId);
    return true;
  }

  /** A node's key was withdrawn: it leaves every federation it was added to (a new registration starts afresh). */
  async forgetNode(nodeId: string): Promise<void> {
    await this.db.deleteFrom('federation_nodes').where('node_id', '=', nodeId).execute();
    for (const nodes of this.nodes.values()) nodes.delete(nodeId);
  }

  /** Whether a node serves a federation: `default` always; others by addition or organisation. */
  serves(federation: string, node: Pick<NodeEntry, 'nodeId' | 'certOrg'>): boolean {
    if (federation === DEFAULT_FEDERATION) return true;
    if (this.nodes.get(federation)?.has(node.nodeId)) return true;
    const f = this.byName.get(federation);
    return f !== undefined && node.certOrg !== null && f.nodeOrgs.includes(node.certOrg);
  }

  /** The stored federations a node serves (besides `default`), by name. */
  servedBy(node: Pick<NodeEntry, 'nodeId' | 'certOrg'>): string[] {
    return [...this.byName.keys()].filter((f) => this.serves(f, node)).sort();
  }

  private nodeMap(federation: string): Map<string, FederationNode> {
    const map = this.nodes.get(federation) ?? new Map<string, FederationNode>();
    this.nodes.set(federation, map);
    return map;
  }
}

/** `who` as a member of `federation` with `role`. */
export function memberOf(who: Identity, federation: string, role: Role, by: string, at: number): Member {
  return {
    federation,
    subject: memberSubject(who),
    name: who.name,
    email: who.email,
    org: who.org,
    role,
    addedBy: by,
    addedAt: at,
  };
}

/** A role name from a request (INVALID_ARGUMENT). */
export function roleArgument(role: string): Role {
  if (!isRole(role))
    throw new PollenError('INVALID_ARGUMENT', `Not a Pollen role: ${JSON.stringify(role.slice(0, 40))}`, {
      hint: `Give one of ${ROLES.join(', ')}.`,
    });
  return role;
}

function copy(f: Federation): Federation {
  return { ...f, nodeOrgs: [...f.nodeOrgs] };
}

function exists(name: string): PollenError {
  return new PollenError('FEDERATION_EXISTS', `A federation named ${name} exists already`, {
    data: { name },
  });
}
