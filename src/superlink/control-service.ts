/**
 * Control API handlers: the CLI (and later the dashboard) start and follow runs, download their
 * artefacts and manage node keys. Callers present an admin certificate of the project over
 * mutual TLS.
 */
import type { ConnectRouter, HandlerContext } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { readBundle } from '../apps/bundle.js';
import { runConfigOf } from '../apps/run-config.js';
import { PollenError } from '../errors.js';
import { Control } from '../gen/pollen/v1/control_pb.js';
import { type Identity, LOCAL_ADMIN } from '../identity/identity.js';
import { nodeIdFromPublicKey, parseSshPublicKey, sshPublicKeyLine } from '../pki/openssh.js';
import { assertValidName, projectSlug } from '../pki/profiles.js';
import { CHUNK_RUN_HEADER } from '../transport/bulk-protocol.js';
import type { BulkRequest } from '../transport/bulk-server.js';
import { serveMissingChunks, servePullChunks, servePushChunks } from '../transport/chunk-rpc.js';
import type { ChunkStore } from '../transport/chunks.js';
import { peerContextKey } from '../transport/context.js';
import { guard, toConnectError } from '../transport/errors.js';
import type { PeerIdentity } from '../transport/tls.js';
import { configFromWire } from '../transport/wire.js';
import { artefactToWire } from './artefacts.js';
import type { Link } from './link.js';
import type { RunLauncher } from './run-launcher.js';
import { serviceAccountHandlers } from './service-account-routes.js';
import type { LogLine } from './state.js';

export interface ControlOptions {
  /** Without TLS (development) every caller is the local admin. */
  requireAdminCert: boolean;
  /** Admit only admins of this project (as for SuperNodes). */
  project?: string;
  onKeyUnregistered: (nodeId: string) => void;
  /** Refused callers are logged here (event `control.refused`). */
  log?: Pick<Logger, 'warn'>;
}

function admin(ctx: HandlerContext, o: ControlOptions): string {
  return adminOf(ctx.values.get(peerContextKey), o);
}

function adminOf(peer: PeerIdentity | undefined, o: ControlOptions): string {
  try {
    return checkAdmin(peer, o);
  } catch (e) {
    if (e instanceof PollenError)
      o.log?.warn(
        { event: 'control.refused', code: e.code, peer: peer?.name, type: peer?.type, reason: e.message },
        'Control API call refused',
      );
    throw e;
  }
}

function checkAdmin(peer: PeerIdentity | undefined, o: ControlOptions): string {
  if (!o.requireAdminCert) return peer?.name ?? 'local';
  if (!peer) throw new PollenError('UNAUTHENTICATED', 'The Control API needs an admin certificate');
  if (peer.type !== 'admin')
    throw new PollenError('PERMISSION_DENIED', `A ${peer.type} certificate cannot use the Control API`, {
      hint: 'Use an admin startup kit (`pollen token generate -s you@example.com --user`) in your federation config.',
    });
  if (o.project && peer.project !== projectSlug(o.project))
    throw new PollenError('PERMISSION_DENIED', `The certificate belongs to project ${peer.project}`);
  return peer.name;
}

/** The caller as an identity: an admin certificate of the project is a project admin. */
function caller(ctx: HandlerContext, o: ControlOptions): Identity {
  const name = admin(ctx, o);
  if (!o.requireAdminCert) return LOCAL_ADMIN;
  return { kind: 'certificate', subject: name, name, org: undefined, roles: ['project_admin'] };
}

/** Log lines as StreamLogs sends them. */
function wireLogLines(lines: LogLine[]) {
  return lines.map((l) => ({ seq: BigInt(l.seq), at: BigInt(l.at), stream: l.stream, text: l.text }));
}

/** `authorize` for the Control API's bulk chunk route: an admin certificate. */
export function controlBulkAuth(o: ControlOptions): (req: BulkRequest) => void {
  return (req) => {
    adminOf(req.peer, o);
  };
}

/** The Control API's bulk chunks: uploads (app bundles) to the shared store, reads of a run's artefacts. */
export function controlChunkStore(link: Link) {
  return (req: BulkRequest): ChunkStore | Promise<ChunkStore> =>
    req.method === 'PUT' ? link.chunks : link.artefacts.reader(req.headers[CHUNK_RUN_HEADER]);
}

export function controlRoutes(link: Link, launcher: RunLauncher, o: ControlOptions) {
  return (router: ConnectRouter): void => {
    router.service(Control, {
      ...serviceAccountHandlers({
        accounts: link.state.serviceAccounts,
        identify: (ctx) => caller(ctx, o),
        log: link.log,
      }),
      missingChunks: guard(async (req, ctx) => {
        admin(ctx, o);
        return serveMissingChunks(link.chunks, req);
      }),
      pushChunks: guard(async (requests, ctx) => {
        admin(ctx, o);
        return servePushChunks(link.chunks, requests, link.chunkLimits);
      }),
      async *pullChunks(req, ctx) {
        try {
          admin(ctx, o);
          const store = await link.artefacts.reader(ctx.requestHeader.get(CHUNK_RUN_HEADER) || undefined);
          yield* servePullChunks(store, req);
        } catch (e) {
          throw toConnectError(e);
        }
      },
      startRun: guard(async (req, ctx) => {
        const who = admin(ctx, o);
        if (!req.fab) throw new PollenError('INVALID_REQUEST', 'StartRun needs the app bundle');
        const fab = await link.registerFab(req.fab);
        // The run config is the app's defaults with the user's overrides, fixed at submission.
        const { manifest } = readBundle(await link.fabBytes(fab.hash));
        const runConfig = runConfigOf(manifest.config, configFromWire(req.runConfig), manifest.name);
        const run = await link.state.createRun({
          fabHash: fab.hash,
          fabName: fab.name,
          fabVersion: fab.version,
          runConfig,
          federation: req.federation || 'default',
          createdBy: who,
        });
        link.log.info({ runId: run.runId, by: who, app: fab.name }, 'run submitted');
        launcher
          .start(run.runId)
          .catch((e) => link.log.warn({ err: e, runId: run.runId }, 'run failed to start'));
        return { runId: run.runId };
      }),
      listRuns: guard(async (req, ctx) => {
        admin(ctx, o);
        const runs = await link.state.listRuns({ limit: req.limit || 100 });
        return { runs: await Promise.all(runs.map((r) => link.toWireRun(r))) };
      }),
      getRunDetails: guard(async (req, ctx) => {
        admin(ctx, o);
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
        const who = admin(ctx, o);
        const run = await link.state.getRun(req.runId);
        if (!run) throw new PollenError('RUN_NOT_FOUND', `No run ${req.runId}`);
        if (run.status === 'finished')
          throw new PollenError(
            'RUN_STATE_CONFLICT',
            `Run ${req.runId} already finished (${run.subStatus})`,
            {
              data: { status: run.status, subStatus: run.subStatus },
            },
          );
        await launcher.finish(req.runId, 'stopped', `stopped by ${who}`);
        return { run: await link.wireRun(req.runId) };
      }),
      async *streamLogs(req, ctx) {
        try {
          admin(ctx, o);
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
      listNodes: guard(async (_req, ctx) => {
        admin(ctx, o);
        const nodes = await link.state.listNodes();
        return {
          nodeAuth: link.nodeAuth,
          nodes: nodes.map((n) => ({
            nodeId: n.nodeId,
            name: n.name,
            status: n.status,
            registered: n.registered,
            lastSeenAt: BigInt(n.lastSeenAt ?? 0),
            certFingerprint: n.certFingerprint ?? '',
            publicKey: n.publicKey ?? '',
            site: n.site ?? '',
            siteBoundBy: n.siteBoundBy ?? '',
            siteBoundAt: BigInt(n.siteBoundAt ?? 0),
          })),
        };
      }),
      registerNode: guard(async (req, ctx) => {
        const who = admin(ctx, o);
        const key = parseSshPublicKey(req.publicKey);
        const nodeId = nodeIdFromPublicKey(key);
        // A certificate name, as `pollen cert site` / the enrollment policy accept them.
        if (req.site) assertValidName(req.site);
        await link.state.registerNodeKey({
          nodeId,
          publicKey: sshPublicKeyLine(key),
          name: req.name || key.comment || nodeId,
          site: req.site || undefined,
          by: who,
        });
        link.log.info(
          { event: 'node.key.registered', nodeId, by: who, site: req.site || null },
          'node key registered',
        );
        return { nodeId };
      }),
      unregisterNode: guard(async (req, ctx) => {
        const who = admin(ctx, o);
        await link.state.unregisterNode(req.nodeId);
        o.onKeyUnregistered(req.nodeId);
        link.nodeGone(req.nodeId);
        link.log.info(
          { event: 'node.key.unregistered', nodeId: req.nodeId, by: who },
          'node key unregistered',
        );
        return {};
      }),
    });
  };
}
