/**
 * The Federations service, on the Control API's port with its caller identities: create and list
 * federations, show one (members, nodes, runs), invite, accept, remove members, add and remove
 * nodes. Rights are those of the caller in the federation (federation-access.ts): creating needs
 * `federation.create`; inviting, removing members and adding or removing nodes
 * `federation.manage` there; seeing a federation `run.view` there. Nobody gives or takes away a
 * role wider than their own in the federation.
 *
 * Each change is logged (`federation.*` events) with who made it: the hook for the audit trail.
 */
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { PollenError } from '../errors.js';
import type { Federations as FederationsService } from '../gen/pollen/v1/federations_pb.js';
import type { Identity, Role } from '../identity/identity.js';
import { covers, type Right, scopeOf, type Target } from '../identity/rights.js';
import { refuseWider } from '../identity/service-account-admin.js';
import { guard } from '../transport/errors.js';
import { type ControlAuthOptions, callerOf, check, presentedBy } from './control-auth.js';
import { inFederation, runTarget, visibleFederations } from './federation-access.js';
import { DEFAULT_FEDERATION, type Federation, type Member, roleArgument } from './federations.js';
import type { Invitation } from './invitations.js';
import type { Link } from './link.js';
import { nodeToWire } from './node-wire.js';

const DEFAULT_RUN_LIMIT = 20;
const MAX_RUN_LIMIT = 500;

/** Every node serves `default`; its description says what it is. */
const DEFAULT_DESCRIPTION = 'Served by every node; your own roles apply';

export function federationHandlers(
  link: Link,
  o: ControlAuthOptions,
): ServiceImpl<typeof FederationsService> {
  const feds = link.state.federations;
  const invitations = link.state.invitations;

  /** The caller, and the caller as they count in `federation` if they hold `right` there. */
  async function within(ctx: HandlerContext, federation: string, right: Right, target?: Target) {
    const p = presentedBy(ctx);
    const who = await callerOf(p, o);
    const there = inFederation(feds, who, federation);
    check(p, o, there, right, target);
    return { who, there };
  }

  /** FEDERATION_DEFAULT_IMPLICIT for calls that manage a stored federation's members or nodes. */
  function stored(federation: string): void {
    if (federation === DEFAULT_FEDERATION)
      throw new PollenError(
        'FEDERATION_DEFAULT_IMPLICIT',
        'The federation `default` has no members, invitations or node list of its own',
      );
  }

  /** What a federation-wide role change is checked against: nobody exceeds their own role there. */
  const notWider = (there: Identity, roles: Role[], what: string) =>
    refuseWider(o.policy, there, roles, { code: 'FEDERATION_ROLE_TOO_WIDE', what });

  function wireFederation(name: string, who: Identity) {
    const nodes = link.state.listNodes();
    if (name === DEFAULT_FEDERATION)
      return {
        name,
        description: DEFAULT_DESCRIPTION,
        nodeOrgs: [],
        createdBy: '',
        createdAt: 0n,
        myRole: '',
        memberCount: 0,
        // Counted only for those who may see the nodes.
        nodeCount:
          scopeOf(o.policy, who, 'run.view') || scopeOf(o.policy, who, 'node.manage') ? nodes.length : 0,
      };
    const f = feds.get(name) as Federation;
    return {
      name: f.name,
      description: f.description,
      nodeOrgs: f.nodeOrgs,
      createdBy: f.createdBy,
      createdAt: BigInt(f.createdAt),
      myRole: feds.membership(name, who)?.role ?? '',
      memberCount: feds.membersOf(name).length,
      nodeCount: nodes.filter((n) => feds.serves(name, n)).length,
    };
  }

  return {
    createFederation: guard(async (req, ctx) => {
      const p = presentedBy(ctx);
      const who = await callerOf(p, o);
      check(p, o, who, 'federation.create');
      const f = await feds.create({
        name: req.name,
        description: req.description,
        nodeOrgs: req.nodeOrgs,
        by: who,
      });
      link.log.info(
        {
          event: 'federation.created',
          federation: f.name,
          by: who.name,
          subject: who.subject,
          nodeOrgs: f.nodeOrgs,
        },
        'federation created',
      );
      return { federation: wireFederation(f.name, who) };
    }),
    listFederations: guard(async (_req, ctx) => {
      const who = await callerOf(presentedBy(ctx), o);
      return { federations: visibleFederations(feds, who).map((f) => wireFederation(f, who)) };
    }),
    getFederation: guard(async (req, ctx) => {
      const { who, there } = await within(ctx, req.name, 'run.view');
      const runScope = scopeOf(o.policy, there, 'run.view')!;
      const limit = Math.min(req.runLimit || DEFAULT_RUN_LIMIT, MAX_RUN_LIMIT);
      const runs = (await link.state.listRuns({ federation: req.name }))
        .filter((r) => covers(runScope, there, runTarget(r)))
        .slice(0, limit);
      const mayInvite = req.name !== DEFAULT_FEDERATION && scopeOf(o.policy, there, 'federation.manage');
      const visible = new Set(visibleFederations(feds, who));
      return {
        federation: wireFederation(req.name, who),
        members: feds.membersOf(req.name).map(memberToWire),
        nodes: link.state
          .listNodes()
          .filter((n) => feds.serves(req.name, n))
          .map((n) =>
            nodeToWire(
              n,
              feds.servedBy(n).filter((f) => visible.has(f)),
            ),
          ),
        runs: await Promise.all(runs.map((r) => link.toWireRun(r))),
        invitations: mayInvite ? (await invitations.pending(req.name)).map(invitationToWire) : [],
      };
    }),
    inviteMember: guard(async (req, ctx) => {
      const { who, there } = await within(ctx, req.federation, 'federation.manage');
      stored(req.federation);
      const role = roleArgument(req.role);
      notWider(there, [role], 'invite someone with');
      const { invitation, code } = await invitations.invite({
        federation: req.federation,
        email: req.email,
        subject: req.subject,
        role,
        ttlSeconds: req.ttlSeconds,
        by: who,
      });
      link.log.info(
        {
          event: 'federation.invited',
          federation: req.federation,
          invitation: invitation.id,
          role,
          email: invitation.email,
          subject: invitation.subject,
          by: who.name,
        },
        'invitation made',
      );
      return { invitation: invitationToWire(invitation), code };
    }),
    revokeInvitation: guard(async (req, ctx) => {
      const p = presentedBy(ctx);
      const who = await callerOf(p, o);
      const found = await invitations.get(req.id);
      // An invitation of a federation the caller does not see does not exist for them.
      let there: Identity | undefined;
      try {
        there = found && inFederation(feds, who, found.federation);
      } catch {}
      if (!found || !there) throw new PollenError('INVITATION_NOT_FOUND', `No invitation ${req.id}`);
      check(p, o, there, 'federation.manage');
      const invitation = await invitations.revoke(found.id, who.name);
      link.log.info(
        {
          event: 'federation.invitation_revoked',
          federation: found.federation,
          invitation: found.id,
          by: who.name,
        },
        'invitation revoked',
      );
      return { invitation: invitationToWire(invitation) };
    }),
    acceptInvitation: guard(async (req, ctx) => {
      const who = await callerOf(presentedBy(ctx), o);
      const { invitation, member } = await invitations.accept(req.code, who);
      link.log.info(
        {
          event: 'federation.joined',
          federation: invitation.federation,
          invitation: invitation.id,
          role: member.role,
          subject: member.subject,
          by: who.name,
        },
        'invitation accepted',
      );
      return { federation: wireFederation(invitation.federation, who), member: memberToWire(member) };
    }),
    listMembers: guard(async (req, ctx) => {
      await within(ctx, req.federation, 'run.view');
      stored(req.federation);
      return { members: feds.membersOf(req.federation).map(memberToWire) };
    }),
    removeMember: guard(async (req, ctx) => {
      const { who, there } = await within(ctx, req.federation, 'federation.manage');
      stored(req.federation);
      const member = feds.membersOf(req.federation).find((m) => m.subject === req.subject);
      if (member) notWider(there, [member.role], 'remove a member with');
      await feds.removeMember(req.federation, req.subject);
      link.log.info(
        {
          event: 'federation.member_removed',
          federation: req.federation,
          subject: req.subject,
          by: who.name,
        },
        'member removed',
      );
      return {};
    }),
    addFederationNode: guard(async (req, ctx) => {
      const { who } = await within(ctx, req.federation, 'federation.manage');
      stored(req.federation);
      if (!link.state.getNode(req.nodeId))
        throw new PollenError('NODE_UNKNOWN', `Node ${req.nodeId} is unknown`, {
          data: { nodeId: req.nodeId },
        });
      await feds.addNode(req.federation, req.nodeId, who.name);
      link.log.info(
        { event: 'federation.node_added', federation: req.federation, nodeId: req.nodeId, by: who.name },
        'node added to federation',
      );
      return {};
    }),
    removeFederationNode: guard(async (req, ctx) => {
      const { who } = await within(ctx, req.federation, 'federation.manage');
      stored(req.federation);
      if (!(await feds.removeNode(req.federation, req.nodeId)))
        throw new PollenError(
          'NODE_NOT_IN_FEDERATION',
          `Node ${req.nodeId} was not added to federation ${req.federation}` +
            (feds.get(req.federation)?.nodeOrgs.length ? ' (nodes may serve it by their organisation)' : ''),
          { data: { federation: req.federation, nodeId: req.nodeId } },
        );
      link.log.info(
        { event: 'federation.node_removed', federation: req.federation, nodeId: req.nodeId, by: who.name },
        'node removed from federation',
      );
      return {};
    }),
  };
}

function memberToWire(m: Member) {
  return {
    subject: m.subject,
    name: m.name,
    email: m.email ?? '',
    org: m.org ?? '',
    role: m.role,
    addedBy: m.addedBy,
    addedAt: BigInt(m.addedAt),
  };
}

function invitationToWire(i: Invitation) {
  return {
    id: i.id,
    federation: i.federation,
    email: i.email ?? '',
    subject: i.subject ?? '',
    role: i.role,
    createdBy: i.createdBy,
    createdAt: BigInt(i.createdAt),
    expiresAt: BigInt(i.expiresAt),
    status: i.status,
  };
}
