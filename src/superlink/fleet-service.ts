/**
 * Fleet API handlers: what a SuperNode may do. Every handler acts as the calling node that the
 * authentication interceptor put in the context, never as a node named in the request.
 */

import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import type { ConnectRouter, HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { PollenError } from '../errors.js';
import { Fleet, PullMessagesResponseSchema } from '../gen/pollen/v1/fleet_pb.js';
import { MessageSchema, type Message as WireMessage } from '../gen/pollen/v1/records_pb.js';
import { CHUNK_RUN_HEADER } from '../transport/bulk-protocol.js';
import type { BulkRequest } from '../transport/bulk-server.js';
import { serveMissingChunks, servePullChunks, servePushChunks } from '../transport/chunk-rpc.js';
import type { ChunkStore } from '../transport/chunks.js';
import { isScopeName } from '../transport/chunks.js';
import { guard, toConnectError } from '../transport/errors.js';
import { type FastUnary, fastUnary } from '../transport/grpc-fast.js';
import type { Link } from './link.js';
import { authenticateSessionCall, fleetAuthInterceptor, type NodeAuthOptions } from './node-auth.js';
import { type CallingNode, callingNodeKey } from './node-identity.js';
import { rateLimitInterceptor } from './rate-limit.js';

function caller(ctx: HandlerContext): CallingNode {
  const node = ctx.values.get(callingNodeKey);
  if (!node) throw new PollenError('NODE_AUTH_MISSING', 'This call needs an authenticated SuperNode');
  return node;
}

/** The run a chunk request names (CHUNK_RUN_HEADER), if any. */
export function chunkRunOf(
  headers: { get(name: string): string | null } | Record<string, string>,
): string | undefined {
  const v =
    typeof headers.get === 'function'
      ? (headers as Headers).get(CHUNK_RUN_HEADER)
      : (headers as Record<string, string>)[CHUNK_RUN_HEADER];
  if (!v) return undefined;
  if (!isScopeName(v)) throw new PollenError('INVALID_ARGUMENT', `Invalid ${CHUNK_RUN_HEADER} header`);
  return v;
}

/** The Fleet API's bulk chunks: a node's uploads for a run, or what it may read of one. */
export function fleetChunkStore(link: Link) {
  return async (req: BulkRequest, who: unknown): Promise<ChunkStore> => {
    const { nodeId } = who as { nodeId: string };
    const runId = chunkRunOf(req.headers);
    return req.method === 'PUT' ? link.nodeUploads(nodeId, runId) : link.nodeReads(nodeId, runId);
  };
}

/** The Fleet API: every handler acts as the calling node the authentication put in the context. */
function fleetImpl(link: Link) {
  return {
    activateNode: guard(async (req, ctx) => {
      const node = caller(ctx);
      const interval = link.heartbeatInterval(req.heartbeatIntervalMs);
      // A certificate names the node; only a development node without one names itself.
      const name = node.certFingerprint ? node.name : req.name || node.name;
      await link.state.activateNode({
        nodeId: node.nodeId,
        name,
        certFingerprint: node.certFingerprint,
        ...(node.certOrg !== undefined && { certOrg: node.certOrg }),
        heartbeatIntervalMs: interval,
        instanceId: req.instanceId.slice(0, 64),
      });
      link.log.info({ nodeId: node.nodeId, name }, 'node activated');
      const session = link.takeNewSession(ctx);
      return { nodeId: node.nodeId, heartbeatIntervalMs: interval, session };
    }),
    deactivateNode: guard(async (_req, ctx) => {
      const node = caller(ctx);
      await link.state.deactivateNode(node.nodeId);
      link.nodeGone(node.nodeId);
      link.log.info({ nodeId: node.nodeId }, 'node deactivated');
      return {};
    }),
    heartbeat: guard(async (req, ctx) => {
      const node = caller(ctx);
      const known = await link.state.heartbeat(node.nodeId, link.heartbeatInterval(req.heartbeatIntervalMs));
      // Run status only when asked (a heartbeat naming no runs answers as it always did).
      if (!known || req.runIds.length === 0) return { known };
      return { known, finishedRunIds: await link.finishedRuns(req.runIds), runsChecked: true };
    }),
    pullMessages: guard(async (req, ctx) => {
      const node = caller(ctx);
      const limit = Math.min(Math.max(req.maxMessages || 16, 1), 256);
      // wait_ms > 0: a long poll (capped by the Link); 0, from older nodes, answers at once.
      const payloads = await link.pullInstructionBytes(node.nodeId, limit, req.waitMs, ctx.signal);
      if (/json/i.test(ctx.requestHeader.get('content-type') ?? ''))
        return { messages: payloads.map((p) => fromBinary(MessageSchema, p)) };
      // Binary protocols: each stored instruction is the wire form of a Message, so it goes out
      // verbatim as field 1 (`messages`) through the unknown-field list, which toBinary writes
      // as it is. Decoding and re-encoding a model would copy it once per nesting level.
      const res = create(PullMessagesResponseSchema);
      res.$unknown = payloads.map((p) => ({
        no: 1,
        wireType: WireType.LengthDelimited,
        data: new BinaryWriter().bytes(p).finish(),
      }));
      return res;
    }),
    pushMessages: guard(async (req, ctx) => {
      const node = caller(ctx);
      if (req.messages.length > 256)
        throw new PollenError('MESSAGE_INVALID', 'Push at most 256 messages per call');
      const results = [];
      for (const message of req.messages) results.push(await link.pushReply(node.nodeId, message));
      return { results };
    }),
    getRun: guard(async (req, ctx) => {
      caller(ctx);
      return { run: await link.wireRun(req.runId, true) };
    }),
    getFab: guard(async (req, ctx) => {
      caller(ctx);
      return { fab: await link.fabs.get(req.hash) };
    }),
    missingChunks: guard(async (req, ctx) =>
      serveMissingChunks(await link.nodeHeld(caller(ctx).nodeId, chunkRunOf(ctx.requestHeader)), req),
    ),
    pushChunks: guard(async (requests, ctx) => {
      const store = await link.nodeUploads(caller(ctx).nodeId, chunkRunOf(ctx.requestHeader));
      return servePushChunks(store, requests, link.chunkLimits);
    }),
    async *pullChunks(req, ctx) {
      try {
        yield* servePullChunks(link.nodeReads(caller(ctx).nodeId, chunkRunOf(ctx.requestHeader)), req);
      } catch (e) {
        throw toConnectError(e);
      }
    },
  } satisfies ServiceImpl<typeof Fleet>;
}

export function fleetRoutes(link: Link) {
  const impl = fleetImpl(link);
  return (router: ConnectRouter): void => {
    router.service(Fleet, impl);
  };
}

/**
 * The Fleet API through Connect, as the SuperLink serves it: the routes behind its interceptors,
 * authentication (it names the node) and then the node's request rate.
 */
export function fleetApi(link: Link, auth: NodeAuthOptions) {
  return {
    routes: fleetRoutes(link),
    interceptors: [fleetAuthInterceptor(auth), rateLimitInterceptor(link.rate)],
  };
}

/**
 * The calls every node makes all the time, answered on the HTTP/2 stream without Connect's
 * pipeline (transport/grpc-fast.ts): same implementation, same authentication and request rate,
 * done here since interceptors do not run for them.
 */
export function fleetFastRoutes(link: Link, auth: NodeAuthOptions): FastUnary[] {
  const impl = fleetImpl(link);
  const authenticated = <I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    handler: (req: MessageShape<I>, ctx: HandlerContext) => Promise<MessageInitShape<O>>,
  ): FastUnary =>
    fastUnary(method, async (req, ctx, body) => {
      try {
        authenticateSessionCall(auth, {
          values: ctx.values,
          header: ctx.requestHeader,
          method: `/${method.parent.typeName}/${method.name}`,
          body: () => body,
        });
        link.rate.take(caller(ctx).nodeId);
      } catch (e) {
        throw toConnectError(e);
      }
      return handler(req, ctx);
    });
  return [
    authenticated(Fleet.method.heartbeat, impl.heartbeat),
    authenticated(Fleet.method.pullMessages, impl.pullMessages),
    authenticated(Fleet.method.pushMessages, impl.pushMessages),
  ];
}

/** Size of a message on the wire, for bytes-moved accounting. */
export function wireSize(message: WireMessage): number {
  return toBinary(MessageSchema, message).byteLength;
}

export const emptyMessage = (): WireMessage => create(MessageSchema);
