/**
 * ServerAppIo handlers: the ServerApp process of one run, authenticated by the per-run token the
 * SuperLink gave it (`authorization: Bearer TOKEN`, header `pollen-run-id`). Listens on loopback.
 */
import {
  type ConnectRouter,
  createContextKey,
  type HandlerContext,
  type Interceptor,
} from '@connectrpc/connect';
import type { Logger } from 'pino';
import { PollenError } from '../errors.js';
import { ServerAppIo } from '../gen/pollen/v1/appio_pb.js';
import type { ArtefactLimits } from '../sdk/artefacts.js';
import { CHUNK_SOURCE_HEADER } from '../transport/bulk-protocol.js';
import type { BulkRequest } from '../transport/bulk-server.js';
import { serveMissingChunks, servePullChunks, servePushChunks } from '../transport/chunk-rpc.js';
import type { ChunkStore } from '../transport/chunks.js';
import { guard, toConnectError } from '../transport/errors.js';
import { artefactToWire, type SaveArtefactInput } from './artefacts.js';
import type { Link } from './link.js';
import type { ArtefactRecord } from './run-artefacts.js';
import type { RunLauncher } from './run-launcher.js';
import { nodeErrorSummary } from './run-records.js';
import type { LinkState } from './state.js';

/**
 * What ServerAppIo serves a run from: the SuperLink's Link, or a simulation's grid
 * (process-serverapp.ts), so that a Python ServerApp speaks to both through the same handlers.
 */
export interface ServerAppIoHost
  extends Pick<
    Link,
    'wireRun' | 'nodesOfRun' | 'pushInstructions' | 'pullReplies' | 'appReads' | 'appUploads' | 'chunkLimits'
  > {
  readonly state: Pick<
    LinkState,
    'verifyRunToken' | 'appendLogs' | 'addRoundMetrics' | 'listRoundMetrics'
  > & {
    getRun(runId: string): Promise<{ status: string; runningAt?: number | null } | undefined>;
  };
  /** Told of each reported round (the metrics; link.ts). */
  roundReported?(runId: string, at: number, startedAt: number | null, participants: number): void;
  readonly artefacts: {
    readonly limits: ArtefactLimits;
    save(runId: string, a: SaveArtefactInput, source: ChunkStore): Promise<ArtefactRecord>;
  };
  readonly log: Pick<Logger, 'info'>;
}

const runIdKey = createContextKey<string | undefined>(undefined, { description: 'authenticated run' });

/** Admit only the ServerApp holding its run's current token. */
export function runTokenInterceptor(link: ServerAppIoHost): Interceptor {
  return (next) => async (req) => {
    try {
      const runId = req.header.get('pollen-run-id') ?? '';
      const token = /^Bearer (.+)$/.exec(req.header.get('authorization') ?? '')?.[1] ?? '';
      if (!runId || !token) throw new PollenError('APP_TOKEN_INVALID', 'The ServerApp token is missing');
      if (!(await link.state.verifyRunToken(runId, token)))
        throw new PollenError('APP_TOKEN_INVALID', 'The ServerApp token is not valid for this run');
      req.contextValues.set(runIdKey, runId);
    } catch (e) {
      throw toConnectError(e);
    }
    return next(req);
  };
}

/** `authorize` for ServerAppIo's bulk chunk route: the same run token as every RPC. */
export function runTokenBulkAuth(link: ServerAppIoHost): (req: BulkRequest) => Promise<{ runId: string }> {
  return async (req) => {
    const runId = req.headers['pollen-run-id'] ?? '';
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    if (!runId || !token) throw new PollenError('APP_TOKEN_INVALID', 'The ServerApp token is missing');
    if (!(await link.state.verifyRunToken(runId, token)))
      throw new PollenError('APP_TOKEN_INVALID', 'The ServerApp token is not valid for this run');
    return { runId };
  };
}

/** ServerAppIo's bulk chunks: uploads to the run's ServerApp scope, reads of a reply's node. */
export function runChunkStore(link: ServerAppIoHost) {
  return (req: BulkRequest, caller: unknown): ChunkStore => {
    const { runId } = caller as { runId: string };
    return req.method === 'PUT'
      ? link.appUploads(runId)
      : link.appReads(runId, req.headers[CHUNK_SOURCE_HEADER] || undefined);
  };
}

function runOf(ctx: HandlerContext): string {
  const runId = ctx.values.get(runIdKey);
  if (!runId) throw new PollenError('APP_TOKEN_INVALID', 'Not authenticated');
  return runId;
}

export function serverAppIoRoutes(link: ServerAppIoHost, launcher: Pick<RunLauncher, 'finish'>) {
  return (router: ConnectRouter): void => {
    router.service(ServerAppIo, {
      getRunInfo: guard(async (_req, ctx) => {
        const { limits } = link.artefacts;
        return {
          run: await link.wireRun(runOf(ctx)),
          artefactLimits: {
            maxBytes: BigInt(limits.maxBytes),
            runMaxBytes: BigInt(limits.runMaxBytes),
            runMaxCount: limits.runMaxCount,
          },
        };
      }),
      getNodes: guard(async (_req, ctx) => ({ nodeIds: await link.nodesOfRun(runOf(ctx)) })),
      pushInstructions: guard(async (req, ctx) => {
        const runId = runOf(ctx);
        if (req.messages.length > 10_000)
          throw new PollenError('MESSAGE_INVALID', 'Push at most 10,000 instructions per call');
        return { messageIds: await link.pushInstructions(runId, req.messages) };
      }),
      pullReplies: guard(async (req, ctx) => {
        const runId = runOf(ctx);
        const messages = await link.pullReplies(runId, req.messageIds, req.waitMs, ctx.signal);
        const run = await link.state.getRun(runId);
        return { messages, runStopped: run?.status === 'finished' };
      }),
      missingChunks: guard(async (req, ctx) => serveMissingChunks(link.appReads(runOf(ctx), undefined), req)),
      pushChunks: guard(async (requests, ctx) =>
        servePushChunks(link.appUploads(runOf(ctx)), requests, link.chunkLimits),
      ),
      async *pullChunks(req, ctx) {
        try {
          const source = ctx.requestHeader.get(CHUNK_SOURCE_HEADER) || undefined;
          yield* servePullChunks(link.appReads(runOf(ctx), source), req);
        } catch (e) {
          throw toConnectError(e);
        }
      },
      pushLogs: guard(async (req, ctx) => {
        const runId = runOf(ctx);
        await link.state.appendLogs(
          runId,
          req.lines
            .slice(0, 1000)
            .map((text) => ({ stream: req.stream === 'stderr' ? 'stderr' : 'stdout', text })),
        );
        return {};
      }),
      reportRound: guard(async (req, ctx) => {
        const runId = runOf(ctx);
        const r = req.round;
        if (!r) throw new PollenError('INVALID_REQUEST', 'ReportRound needs a round');
        const at = Date.now();
        await link.state.addRoundMetrics(runId, {
          round: r.round,
          at,
          metrics: Object.fromEntries(Object.entries(r.metrics).filter(([, v]) => Number.isFinite(v))),
          nodeIds: r.nodeIds.slice(0, 100_000),
          bytesSent: Number(r.bytesSent),
          bytesReceived: Number(r.bytesReceived),
          replies: r.replies,
          failures: r.failures,
        });
        link.roundReported?.(runId, at, (await link.state.getRun(runId))?.runningAt ?? null, r.replies);
        return {};
      }),
      saveArtefact: guard(async (req, ctx) => {
        const runId = runOf(ctx);
        const run = await link.state.getRun(runId);
        if (run?.status === 'finished')
          throw new PollenError('RUN_NOT_RUNNING', `Run ${runId} finished; it keeps no more artefacts`);
        const saved = await link.artefacts.save(
          runId,
          { name: req.name, hash: req.hash, size: Number(req.size), chunkIds: req.chunkIds },
          link.appReads(runId, undefined),
        );
        link.log.info({ runId, artefact: saved.name, size: saved.size, hash: saved.hash }, 'artefact saved');
        return { artefact: artefactToWire(saved) };
      }),
      finishRun: guard(async (req, ctx) => {
        const runId = runOf(ctx);
        const subStatus = req.subStatus === 'completed' ? 'completed' : 'failed';
        // A run that completed despite failed nodes says so in its final state.
        const reason =
          subStatus === 'completed'
            ? [req.reason, nodeErrorSummary(runId, await link.state.listRoundMetrics(runId))]
                .filter(Boolean)
                .join('; ')
            : req.reason;
        await launcher.finish(runId, subStatus, reason);
        return {};
      }),
    });
  };
}
