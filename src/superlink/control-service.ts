/**
 * Control API handlers: the CLI (and later the dashboard) start and follow runs, download their
 * artefacts and manage node keys. Each call carries one identity (an admin certificate over
 * mutual TLS, or a bearer token; control-auth.ts) and needs the right its handler names.
 */
import type { ConnectRouter } from '@connectrpc/connect';
import { readBundle } from '../apps/bundle.js';
import { runConfigOf } from '../apps/run-config.js';
import { PollenError } from '../errors.js';
import { Control } from '../gen/pollen/v1/control_pb.js';
import { Federations } from '../gen/pollen/v1/federations_pb.js';
import type { Identity } from '../identity/identity.js';
import { covers, type Right, scopeOf } from '../identity/rights.js';
import { assertValidName } from '../pki/names.js';
import { nodeIdFromPublicKey, parseSshPublicKey, sshPublicKeyLine } from '../pki/openssh.js';
import { CHUNK_RUN_HEADER } from '../transport/bulk-protocol.js';
import type { BulkRequest } from '../transport/bulk-server.js';
import { serveMissingChunks, servePullChunks, servePushChunks } from '../transport/chunk-rpc.js';
import type { ChunkStore } from '../transport/chunks.js';
import { guard, toConnectError } from '../transport/errors.js';
import { configFromWire } from '../transport/wire.js';
import { artefactToWire } from './artefacts.js';
import { type ControlAuthOptions, callerOf, check, type Presented, presentedBy } from './control-auth.js';
import { inFederation, isOperator, runTarget, scopesByFederation, seenIn } from './federation-access.js';
import { federationHandlers } from './federation-routes.js';
import { DEFAULT_FEDERATION } from './federations.js';
import type { Link } from './link.js';
import { loginDetails } from './login-details.js';
import { nodeToWire } from './node-wire.js';
import type { RunLauncher } from './run-launcher.js';
import type { Run } from './run-store.js';
import { serviceAccountHandlers } from './service-account-routes.js';
import type { LogLine } from './state.js';

export interface ControlOptions extends ControlAuthOptions {
  onKeyUnregistered: (nodeId: string) => void;
}

export { runTarget };

/**
 * The caller, if they hold `right` in some federation they see (RIGHT_MISSING, logged, if in
 * none): what a call checks before it looks anything up, so a caller without the right learns
 * nothing of what exists.
 */
async function holder(p: Presented, o: ControlOptions, link: Link, right: Right): Promise<Identity> {
  const who = await callerOf(p, o);
  // Held by the caller's own roles (in `default`), or else in some federation they belong to.
  if (scopeOf(o.policy, who, right)) return who;
  if (scopesByFederation(o.policy, link.state.federations, who, right).size === 0) check(p, o, who, right);
  return who;
}

/**
 * The artefact chunks of run `runId`, if the caller may view that run. No run named is
 * CHUNK_RUN_REQUIRED; a run that does not exist has no chunks in scope (CHUNK_SCOPE_DENIED).
 */
async function artefactsOf(p: Presented, o: ControlOptions, link: Link, runId: string | undefined) {
  const who = await holder(p, o, link, 'run.view');
  const run = runId ? await link.state.getRun(runId) : undefined;
  if (run) checkOnRun(p, o, link, who, 'run.view', run);
  return link.artefacts.reader(runId);
}

/**
 * The caller, if they hold `right` over run `runId` in the run's federation. A run of a
 * federation the caller does not see is RUN_NOT_FOUND, as one that does not exist.
 */
async function onRun(p: Presented, o: ControlOptions, link: Link, right: Right, runId: string | undefined) {
  const who = await holder(p, o, link, right);
  const run = runId ? await link.state.getRun(runId) : undefined;
  if (!run) throw new PollenError('RUN_NOT_FOUND', `No run ${runId ?? '(none named)'}`);
  checkOnRun(p, o, link, who, right, run);
  return { who, run };
}

function checkOnRun(
  p: Presented,
  o: ControlOptions,
  link: Link,
  who: Identity,
  right: Right,
  run: Run,
): void {
  const there = seenIn(link.state.federations, who, run.federation);
  if (!there) throw new PollenError('RUN_NOT_FOUND', `No run ${run.runId}`);
  check(p, o, there, right, runTarget(run));
}

/** Log lines as StreamLogs sends them. */
function wireLogLines(lines: LogLine[]) {
  return lines.map((l) => ({ seq: BigInt(l.seq), at: BigInt(l.at), stream: l.stream, text: l.text }));
}

/**
 * `authorize` for the Control API's bulk chunk route: uploads (app bundles) need run.submit,
 * reads (a run's artefacts) run.view over that run.
 */
export function controlBulkAuth(o: ControlOptions, link: Link): (req: BulkRequest) => Promise<void> {
  return async (req) => {
    // The trail names a refused chunk call by its HTTP method, its chunk and where it came from.
    const call = {
      method: `Chunks/${req.method}`,
      address: req.address ?? null,
      federation: null,
      target: req.id,
    };
    const p = { peer: req.peer, authorization: req.authorization, call };
    if (req.method === 'PUT') await holder(p, o, link, 'run.submit');
    else await artefactsOf(p, o, link, req.headers[CHUNK_RUN_HEADER] || undefined);
  };
}

/** The Control API's bulk chunks: uploads (app bundles) to the shared store, reads of a run's artefacts. */
export function controlChunkStore(link: Link) {
  return (req: BulkRequest): ChunkStore | Promise<ChunkStore> =>
    req.method === 'PUT' ? link.chunks : link.artefacts.reader(req.headers[CHUNK_RUN_HEADER]);
}

export function controlRoutes(link: Link, launcher: RunLauncher, o: ControlOptions) {
  return (router: ConnectRouter): void => {
    router.service(Federations, federationHandlers(link, o));
    router.service(Control, {
      ...serviceAccountHandlers({
        accounts: link.state.serviceAccounts,
        identify: (ctx) => callerOf(presentedBy(ctx), o),
        check: (ctx, who, right, target) => check(presentedBy(ctx), o, who, right, target),
        policy: o.policy,
        log: link.log,
      }),
      missingChunks: guard(async (req, ctx) => {
        await holder(presentedBy(ctx), o, link, 'run.submit');
        return serveMissingChunks(link.chunks, req);
      }),
      pushChunks: guard(async (requests, ctx) => {
        await holder(presentedBy(ctx), o, link, 'run.submit');
        return servePushChunks(link.chunks, requests, link.chunkLimits);
      }),
      async *pullChunks(req, ctx) {
        try {
          const runId = ctx.requestHeader.get(CHUNK_RUN_HEADER) || undefined;
          const store = await artefactsOf(presentedBy(ctx), o, link, runId);
          yield* servePullChunks(store, req);
        } catch (e) {
          throw toConnectError(e);
        }
      },
      startRun: guard(async (req, ctx) => {
        const p = presentedBy(ctx);
        const who = await callerOf(p, o);
        const federation = req.federation || DEFAULT_FEDERATION;
        check(p, o, inFederation(link.state.federations, who, federation), 'run.submit');
        if (!req.fab) throw new PollenError('INVALID_REQUEST', 'StartRun needs the app bundle');
        const fab = await link.fabs.register(req.fab);
        // The run config is the app's defaults with the user's overrides, fixed at submission.
        const { manifest } = readBundle(await link.fabs.bytes(fab.hash));
        const runConfig = runConfigOf(manifest.config, configFromWire(req.runConfig), manifest.name);
        const run = await link.state.createRun({
          fabHash: fab.hash,
          fabName: fab.name,
          fabVersion: fab.version,
          runConfig,
          federation,
          createdBy: who.name,
          createdBySubject: who.subject,
          org: who.org ?? null,
        });
        link.log.info(
          { runId: run.runId, by: who.name, identity: who.kind, org: who.org, app: fab.name, federation },
          'run submitted',
        );
        launcher
          .start(run.runId)
          .catch((e) => link.log.warn({ err: e, runId: run.runId }, 'run failed to start'));
        return { runId: run.runId };
      }),
      listRuns: guard(async (req, ctx) => {
        const p = presentedBy(ctx);
        const who = await holder(p, o, link, 'run.view');
        const limit = req.limit || 100;
        const feds = link.state.federations;
        if (req.federation) check(p, o, inFederation(feds, who, req.federation), 'run.view');
        const scopes = scopesByFederation(o.policy, feds, who, 'run.view');
        // An operator sees every run: the store may apply the limit.
        const everything = isOperator(who) && [...scopes.values()].every((s) => s.scope === 'any');
        // Filtered before the limit is applied would need the store to know scopes; runs are few.
        const runs = (
          await link.state.listRuns({
            ...(req.federation && { federation: req.federation }),
            ...(everything && { limit }),
          })
        )
          .filter((r) => {
            const s = scopes.get(r.federation);
            return s !== undefined && covers(s.scope, s.who, runTarget(r));
          })
          .slice(0, limit);
        return { runs: await Promise.all(runs.map((r) => link.toWireRun(r))) };
      }),
      getRunDetails: guard(async (req, ctx) => {
        await onRun(presentedBy(ctx), o, link, 'run.view', req.runId);
        const run = await link.wireRun(req.runId);
        const rounds = await link.state.listRoundMetrics(req.runId);
        const artefacts = await link.state.listArtefacts(req.runId);
        return {
          run,
          artefacts: artefacts.map(artefactToWire),
          rounds: rounds.map((r) => ({
            round: r.round,
            at: BigInt(r.at),
            metrics: r.metrics,
            nodeIds: r.nodeIds,
            bytesSent: BigInt(r.bytesSent),
            bytesReceived: BigInt(r.bytesReceived),
            replies: r.replies,
            failures: r.failures,
          })),
        };
      }),
      stopRun: guard(async (req, ctx) => {
        const { who, run } = await onRun(presentedBy(ctx), o, link, 'run.stop', req.runId);
        if (run.status === 'finished')
          throw new PollenError(
            'RUN_STATE_CONFLICT',
            `Run ${req.runId} already finished (${run.subStatus})`,
            {
              data: { status: run.status, subStatus: run.subStatus },
            },
          );
        await launcher.finish(req.runId, 'stopped', `stopped by ${who.name}`);
        return { run: await link.wireRun(req.runId) };
      }),
      async *streamLogs(req, ctx) {
        try {
          await onRun(presentedBy(ctx), o, link, 'run.view', req.runId);
          let after = Number(req.afterSeq);
          for (;;) {
            const lines = await link.state.readLogs(req.runId, { afterSeq: after, limit: 500 });
            if (lines.length > 0) {
              after = lines[lines.length - 1]!.seq;
              yield {
                lines: wireLogLines(lines),
              };
              continue;
            }
            const run = await link.wireRun(req.runId);
            if (!req.follow || run.status === 'finished') {
              // Lines written just before the run finished.
              const rest = await link.state.readLogs(req.runId, { afterSeq: after, limit: 500 });
              yield {
                lines: wireLogLines(rest),
                run,
              };
              return;
            }
            await link.time.sleep(250, ctx.signal).catch(() => {});
            if (ctx.signal.aborted) return;
          }
        } catch (e) {
          throw toConnectError(e);
        }
      },
      listNodes: guard(async (req, ctx) => {
        // Which nodes serve a federation is part of following its runs (run.view) or managing
        // its nodes (node.manage): a caller sees the nodes of the federations where they hold either.
        const p = presentedBy(ctx);
        const feds = link.state.federations;
        const who = await callerOf(p, o);
        const seen = new Set([
          ...scopesByFederation(o.policy, feds, who, 'run.view').keys(),
          ...scopesByFederation(o.policy, feds, who, 'node.manage').keys(),
        ]);
        if (seen.size === 0) check(p, o, who, 'run.view');
        if (req.federation) {
          const there = inFederation(feds, who, req.federation);
          if (!seen.has(req.federation)) check(p, o, there, 'run.view');
        }
        const wanted = req.federation ? [req.federation] : [...seen];
        const nodes = link.state.listNodes().filter((n) => wanted.some((f) => feds.serves(f, n)));
        return {
          nodeAuth: link.nodeAuth,
          nodes: nodes.map((n) =>
            nodeToWire(
              n,
              feds.servedBy(n).filter((f) => seen.has(f)),
            ),
          ),
        };
      }),
      registerNode: guard(async (req, ctx) => {
        // A key is registered into the registrant's organisation, by node.manage in the
        // federation it joins (`default`: the registrant's own roles).
        const p = presentedBy(ctx);
        const who = await callerOf(p, o);
        const feds = link.state.federations;
        const federation = req.federation || DEFAULT_FEDERATION;
        const there = inFederation(feds, who, federation);
        check(p, o, there, 'node.manage', { org: who.org });
        const key = parseSshPublicKey(req.publicKey);
        const nodeId = nodeIdFromPublicKey(key);
        const known = link.state.getNode(nodeId);
        if (known?.registered && federation !== DEFAULT_FEDERATION) {
          // Registered already: it joins one more federation, if its organisation is the caller's to manage.
          check(p, o, there, 'node.manage', { org: known.org ?? undefined });
          await feds.addNode(federation, nodeId, who.name);
          link.log.info(
            { event: 'federation.node_added', federation, nodeId, by: who.name, org: who.org },
            'registered node added to federation',
          );
          return { nodeId };
        }
        // A certificate name, as `pollen cert site` / the enrollment policy accept them.
        if (req.site) assertValidName(req.site);
        await link.state.registerNodeKey({
          nodeId,
          publicKey: sshPublicKeyLine(key),
          name: req.name || key.comment || nodeId,
          site: req.site || undefined,
          by: who.name,
          ...(who.org !== undefined && { org: who.org }),
        });
        if (federation !== DEFAULT_FEDERATION) await feds.addNode(federation, nodeId, who.name);
        link.log.info(
          {
            event: 'node.key.registered',
            nodeId,
            by: who.name,
            org: who.org,
            site: req.site || null,
            federation,
          },
          'node key registered',
        );
        return { nodeId };
      }),
      // Unauthenticated: where `pollen login` sends a user (empty when the SuperLink takes no login).
      getLoginDetails: guard(async () => loginDetails(o.oidc)),
      whoAmI: guard(async (_req, ctx) => {
        const who = await callerOf(presentedBy(ctx), o);
        return {
          identity: {
            kind: who.kind,
            subject: who.subject,
            name: who.name,
            org: who.org ?? '',
            roles: who.roles,
            email: who.email ?? '',
            expiresAt: BigInt(who.expiresAt ?? 0),
          },
        };
      }),
      unregisterNode: guard(async (req, ctx) => {
        const p = presentedBy(ctx);
        const who = await callerOf(p, o);
        check(p, o, who, 'node.manage');
        const node = link.state.getNode(req.nodeId);
        if (node) check(p, o, who, 'node.manage', { org: node.org ?? undefined });
        await link.state.unregisterNode(req.nodeId);
        o.onKeyUnregistered(req.nodeId);
        link.nodeGone(req.nodeId);
        link.log.info(
          { event: 'node.key.unregistered', nodeId: req.nodeId, by: who.name, org: who.org },
          'node key unregistered',
        );
        return {};
      }),
    });
  };
}
