/**
 * One SuperLink, two federations, two organisations, nodes in both (in memory: the Control,
 * Federations, Fleet and ServerAppIo services through Connect's router transport). A member of
 * one federation learns nothing of the other (every read and action answers as for something
 * that does not exist), and a run's ServerApp sees and reaches only the nodes serving its
 * federation: by organisation (`node_orgs`) or by being added.
 */
import { describe, expect, it } from 'vitest';
import { outcomeOf } from './support/errors.js';
import { localTokens } from './support/local-tokens.js';
import { type MemoryLink, memoryLinks } from './support/memory-link.js';
import { pendingRun } from './support/runs.js';

const start = memoryLinks('federation-isolation');
const ALPHA = 'Alpha Clinic';
const BETA = 'Beta Hospital';

/** Two federations: `alpha` served by Alpha Clinic's nodes, `beta` by the node added to it. */
async function twoFederations() {
  const tokens = await localTokens();
  const l = await start({ control: { tokens: tokens.verifier } });
  const operator = l.federations(l.peer('operator@test', { type: 'admin' }));
  await operator.createFederation({ name: 'alpha', nodeOrgs: [ALPHA] });
  await operator.createFederation({ name: 'beta', description: 'Beta study' });
  const a1 = await l.node('a1', { org: ALPHA });
  const b1 = await l.node('b1', { org: BETA });
  const x1 = await l.node('x1');
  await operator.addFederationNode({ federation: 'beta', nodeId: b1.nodeId });
  /** A person with no role of their own, a `lead` in `federation` by invitation. */
  const leadOf = async (sub: string, org: string, federation: string) => {
    const headers = { authorization: `Bearer ${await tokens.sign(sub, { roles: [], org })}` };
    const { code } = await operator.inviteMember({ federation, subject: sub, role: 'lead' });
    await l.federations(undefined, headers).acceptInvitation({ code });
    return { control: l.control(undefined, headers), federations: l.federations(undefined, headers) };
  };
  const leadA = await leadOf('lead-a', ALPHA, 'alpha');
  const leadB = await leadOf('lead-b', BETA, 'beta');
  return { l, operator, a1, b1, x1, leadA, leadB, tokens };
}

/** A run of `federation` created by `subject` of `org`, pending or running. */
async function runOf(l: MemoryLink, federation: string, subject: string, org: string, running = false) {
  const runId = await pendingRun(l.state, 'app', { subject, org, federation });
  if (running) {
    await l.state.transitionRun(runId, 'starting');
    await l.state.transitionRun(runId, 'running');
  }
  return runId;
}

describe('two federations on one SuperLink', () => {
  it('lists to each member only the federations they belong to, with their role there', async () => {
    const { operator, leadA, leadB } = await twoFederations();
    const names = async (c: typeof operator) =>
      (await c.listFederations({})).federations.map((f) => `${f.name}:${f.myRole}`);
    expect(await names(leadA.federations)).toEqual(['default:', 'alpha:lead']);
    expect(await names(leadB.federations)).toEqual(['default:', 'beta:lead']);
    // The operator created both, so is their first member.
    expect(await names(operator)).toEqual(['default:', 'alpha:project_admin', 'beta:project_admin']);
  });

  it('refuses every cross-federation read and action as if the federation did not exist', async () => {
    const { l, leadA, b1 } = await twoFederations();
    const f = leadA.federations;
    const c = leadA.control;
    const runB = await runOf(l, 'beta', 'lead-b', BETA);
    const asMissing = {
      getFederation: await outcomeOf(f.getFederation({ name: 'beta' })),
      listMembers: await outcomeOf(f.listMembers({ federation: 'beta' })),
      inviteMember: await outcomeOf(f.inviteMember({ federation: 'beta', subject: 'x', role: 'member' })),
      removeMember: await outcomeOf(f.removeMember({ federation: 'beta', subject: 'user:lead-b' })),
      addFederationNode: await outcomeOf(f.addFederationNode({ federation: 'beta', nodeId: b1.nodeId })),
      removeFederationNode: await outcomeOf(
        f.removeFederationNode({ federation: 'beta', nodeId: b1.nodeId }),
      ),
      startRun: await outcomeOf(c.startRun({ federation: 'beta' })),
      listRuns: await outcomeOf(c.listRuns({ federation: 'beta' })),
      listNodes: await outcomeOf(c.listNodes({ federation: 'beta' })),
      registerNode: await outcomeOf(c.registerNode({ publicKey: l.nodeKey().publicKey, federation: 'beta' })),
      getRunDetails: await outcomeOf(c.getRunDetails({ runId: runB })),
      stopRun: await outcomeOf(c.stopRun({ runId: runB })),
      streamLogs: await outcomeOf(
        (async () => {
          for await (const _ of c.streamLogs({ runId: runB })) break;
        })(),
      ),
    };
    expect(asMissing).toEqual({
      getFederation: 'FEDERATION_NOT_FOUND',
      listMembers: 'FEDERATION_NOT_FOUND',
      inviteMember: 'FEDERATION_NOT_FOUND',
      removeMember: 'FEDERATION_NOT_FOUND',
      addFederationNode: 'FEDERATION_NOT_FOUND',
      removeFederationNode: 'FEDERATION_NOT_FOUND',
      startRun: 'FEDERATION_NOT_FOUND',
      listRuns: 'FEDERATION_NOT_FOUND',
      listNodes: 'FEDERATION_NOT_FOUND',
      registerNode: 'FEDERATION_NOT_FOUND',
      getRunDetails: 'RUN_NOT_FOUND',
      stopRun: 'RUN_NOT_FOUND',
      streamLogs: 'RUN_NOT_FOUND',
    });
    // In their own federation a lead submits (the request fails only for its missing bundle) and
    // uploads bundles; in `default` their own roles, none, apply.
    expect(await outcomeOf(c.startRun({ federation: 'alpha' }))).toBe('INVALID_REQUEST');
    expect(await outcomeOf(c.missingChunks({}))).toBe('ok');
    expect(await outcomeOf(c.startRun({}))).toBe('RIGHT_MISSING');
    // The same answer as for a federation that does not exist.
    expect(await outcomeOf(f.getFederation({ name: 'gamma' }))).toBe('FEDERATION_NOT_FOUND');
    expect((await l.state.getRun(runB))?.status).toBe('pending');
  });

  it('shows a member their federation: its nodes, its runs, its members; no runs or nodes of the other', async () => {
    const { l, leadA, a1, b1, x1 } = await twoFederations();
    const runA = await runOf(l, 'alpha', 'lead-a', ALPHA);
    const runB = await runOf(l, 'beta', 'lead-b', BETA);
    const runDefault = await runOf(l, 'default', 'op', ALPHA);
    const shown = await leadA.federations.getFederation({ name: 'alpha' });
    expect(shown.federation).toMatchObject({
      name: 'alpha',
      nodeOrgs: [ALPHA],
      myRole: 'lead',
      memberCount: 2,
    });
    expect(shown.nodes.map((n) => [n.nodeId, n.status, n.federations])).toEqual([
      [a1.nodeId, 'online', ['alpha']],
    ]);
    expect(shown.runs.map((r) => r.runId)).toEqual([runA]);
    expect(shown.members.map((m) => `${m.subject}:${m.role}`)).toEqual([
      'certificate:operator@test:project_admin',
      'user:lead-a:lead',
    ]);
    // A lead may not invite: no pending invitations are shown.
    expect(shown.invitations).toEqual([]);
    // Run and node lists hold only what the caller's federations hold (`default` gives them nothing).
    expect((await leadA.control.listRuns({})).runs.map((r) => r.runId)).toEqual([runA]);
    expect((await leadA.control.listNodes({})).nodes.map((n) => n.nodeId)).toEqual([a1.nodeId]);
    // An operator sees every run and node, each node with the federations it serves.
    const all = await l.admin().listNodes({});
    expect(Object.fromEntries(all.nodes.map((n) => [n.nodeId, n.federations]))).toEqual({
      [a1.nodeId]: ['alpha'],
      [b1.nodeId]: ['beta'],
      [x1.nodeId]: [],
    });
    expect(new Set((await l.admin().listRuns({})).runs.map((r) => r.runId))).toEqual(
      new Set([runA, runB, runDefault]),
    );
    expect((await l.admin().listRuns({ federation: 'beta' })).runs.map((r) => r.runId)).toEqual([runB]);
  });

  it("gives a run's ServerApp only its federation's online nodes, and refuses instructions to any other", async () => {
    const { l, a1, b1, x1 } = await twoFederations();
    const runA = await runOf(l, 'alpha', 'op', ALPHA, true);
    const runB = await runOf(l, 'beta', 'op', BETA, true);
    const runD = await runOf(l, 'default', 'op', ALPHA, true);
    const appA = await l.serverApp(runA);
    expect((await appA.getNodes({})).nodeIds).toEqual([a1.nodeId]);
    expect((await (await l.serverApp(runB)).getNodes({})).nodeIds).toEqual([b1.nodeId]);
    expect(new Set((await (await l.serverApp(runD)).getNodes({})).nodeIds)).toEqual(
      new Set([a1.nodeId, b1.nodeId, x1.nodeId]),
    );
    await expect(l.instruct(runA, b1.nodeId)).rejects.toMatchObject({ code: 'NODE_NOT_IN_FEDERATION' });
    await expect(l.instruct(runA, x1.nodeId)).rejects.toMatchObject({ code: 'NODE_NOT_IN_FEDERATION' });
    const id = await l.instruct(runA, a1.nodeId);
    expect((await b1.fleet.pullMessages({})).messages).toEqual([]);
    expect((await a1.fleet.pullMessages({})).messages.map((m) => m.metadata?.messageId)).toEqual([id]);
    // A `default` run reaches every node.
    await l.instruct(runD, x1.nodeId);
    expect((await x1.fleet.pullMessages({})).messages).toHaveLength(1);
  });

  it('withholds instructions queued for a node that has since left the federation', async () => {
    const { l, operator, b1 } = await twoFederations();
    const runB = await runOf(l, 'beta', 'op', BETA, true);
    await l.instruct(runB, b1.nodeId);
    await operator.removeFederationNode({ federation: 'beta', nodeId: b1.nodeId });
    expect((await b1.fleet.pullMessages({})).messages).toEqual([]);
    expect((await (await l.serverApp(runB)).getNodes({})).nodeIds).toEqual([]);
    // Alpha serves by organisation: a node of it cannot be taken out one by one.
    expect(await outcomeOf(operator.removeFederationNode({ federation: 'alpha', nodeId: b1.nodeId }))).toBe(
      'NODE_NOT_IN_FEDERATION',
    );
  });

  it('registers a node key into a federation, and a registered key into one more', async () => {
    const { l, operator, tokens } = await twoFederations();
    // An org admin of alpha (by invitation), with no role of their own.
    const headers = {
      authorization: `Bearer ${await tokens.sign('oa-a', { roles: [], org: ALPHA })}`,
    };
    const { code } = await operator.inviteMember({ federation: 'alpha', subject: 'oa-a', role: 'org_admin' });
    await l.federations(undefined, headers).acceptInvitation({ code });
    const orgAdmin = l.control(undefined, headers);
    const key = l.nodeKey();
    expect(await outcomeOf(orgAdmin.registerNode({ publicKey: key.publicKey }))).toBe('RIGHT_MISSING');
    const { nodeId } = await orgAdmin.registerNode({ publicKey: key.publicKey, federation: 'alpha' });
    expect(l.state.federations.servedBy({ nodeId, certOrg: null })).toEqual(['alpha']);
    expect(await outcomeOf(orgAdmin.registerNode({ publicKey: key.publicKey, federation: 'beta' }))).toBe(
      'FEDERATION_NOT_FOUND',
    );
    await l.admin().registerNode({ publicKey: key.publicKey, federation: 'beta' });
    expect(l.state.federations.servedBy({ nodeId, certOrg: null })).toEqual(['alpha', 'beta']);
    // Federations and their nodes are in the store, not only in memory.
    await l.state.federations.load();
    expect(l.state.federations.servedBy({ nodeId, certOrg: null })).toEqual(['alpha', 'beta']);
    expect(l.state.federations.membersOf('alpha').map((m) => m.subject)).toContain('user:oa-a');
    // Unregistered, the key leaves every federation: registered again, it starts afresh.
    await l.admin().unregisterNode({ nodeId });
    await l.admin().registerNode({ publicKey: key.publicKey });
    expect(l.state.federations.servedBy({ nodeId, certOrg: null })).toEqual([]);
  });
});
