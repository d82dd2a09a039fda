/**
 * ClientAppIo on the SuperNode: each run's ClientApp process pulls its instructions here and
 * pushes its replies (loopback only, per-run token). Chunks live in the node's chunk store.
 */

import { timingSafeEqual } from 'node:crypto';
import {
  type ConnectRouter,
  createContextKey,
  type HandlerContext,
  type Interceptor,
} from '@connectrpc/connect';
import { PollenError } from '../errors.js';
import { ClientAppIo } from '../gen/pollen/v1/appio_pb.js';
import type { ConfigValue } from '../gen/pollen/v1/records_pb.js';
import type { BulkRequest } from '../transport/bulk-server.js';
import { serveMissingChunks, servePullChunks, servePushChunks } from '../transport/chunk-rpc.js';
import type { ChunkStore } from '../transport/chunks.js';
import { guard, toConnectError } from '../transport/errors.js';
import { type FastStream, fastChunkRoutes } from '../transport/grpc-fast-chunks.js';
import { MAX_MESSAGE_BYTES } from '../transport/http2-settings.js';
import type { WireMessage } from '../transport/wire.js';
import type { Waiters } from '../util/waiters.js';

export interface AppSlot {
  runId: string;
  token: string;
  queue: WireMessage[];
  shutdown: boolean;
  runConfig: { [k: string]: ConfigValue };
}

export interface ClientAppIoHost {
  nodeId(): string;
  nodeConfig: { [k: string]: ConfigValue };
  slot(runId: string): AppSlot | undefined;
  chunks: ChunkStore;
  /** A reply from the app, to forward to the SuperLink. */
  onResult(slot: AppSlot, reply: WireMessage): Promise<void>;
  tasks: Waiters;
}

/** An app pushes its replies' chunks in one stream: 4 MiB chunks, any number a model needs. */
const PUSH_LIMITS = { maxChunkBytes: 4 << 20, maxChunks: 1 << 20 };

const slotKey = createContextKey<AppSlot | undefined>(undefined, { description: 'app slot' });

export function appTokenInterceptor(host: Pick<ClientAppIoHost, 'slot'>): Interceptor {
  return (next) => async (req) => {
    const headers = {
      authorization: req.header.get('authorization') ?? undefined,
      'pollen-run-id': req.header.get('pollen-run-id') ?? undefined,
    };
    try {
      req.contextValues.set(slotKey, tokenSlot(host, headers));
    } catch (e) {
      throw toConnectError(e);
    }
    return next(req);
  };
}

/** The run slot whose per-run token the headers carry; APP_TOKEN_INVALID if none does. */
function tokenSlot(
  host: Pick<ClientAppIoHost, 'slot'>,
  headers: Record<string, string | undefined>,
): AppSlot {
  const token = /^Bearer (.+)$/.exec(headers.authorization ?? '')?.[1] ?? '';
  const slot = host.slot(headers['pollen-run-id'] ?? '');
  const ok =
    slot !== undefined &&
    token.length === slot.token.length &&
    timingSafeEqual(Buffer.from(token), Buffer.from(slot.token));
  if (!ok) throw new PollenError('APP_TOKEN_INVALID', 'The ClientApp token is not valid');
  return slot;
}

/** `authorize` for ClientAppIo's bulk chunk route: the same per-run token as every RPC. */
export function appTokenBulkAuth(host: Pick<ClientAppIoHost, 'slot'>): (req: BulkRequest) => void {
  return (req) => {
    tokenSlot(host, req.headers);
  };
}

/**
 * PullChunks and PushChunks on the direct HTTP/2 path (grpc-fast-chunks.ts), for apps that move
 * chunks over the RPCs (the Python SDK); the same token, checks and store as the Connect routes.
 */
export function clientAppIoFastChunks(host: Pick<ClientAppIoHost, 'slot' | 'chunks'>): FastStream[] {
  return fastChunkRoutes({
    service: ClientAppIo.typeName,
    store: host.chunks,
    authorize: (headers) => {
      tokenSlot(host, headers);
    },
    push: PUSH_LIMITS,
    maxMessageBytes: MAX_MESSAGE_BYTES,
  });
}

function slotOf(ctx: HandlerContext): AppSlot {
  const slot = ctx.values.get(slotKey);
  if (!slot) throw new PollenError('APP_TOKEN_INVALID', 'Not authenticated');
  return slot;
}

export function clientAppIoRoutes(host: ClientAppIoHost) {
  return (router: ConnectRouter): void => {
    router.service(ClientAppIo, {
      pullTask: guard(async (req, ctx) => {
        const slot = slotOf(ctx);
        const deadline = Date.now() + Math.min(req.waitMs, 30_000);
        while (slot.queue.length === 0 && !slot.shutdown && Date.now() < deadline && !ctx.signal.aborted)
          await host.tasks.wait(slot.runId, deadline - Date.now(), ctx.signal);
        const message = slot.shutdown ? undefined : slot.queue.shift();
        return {
          message,
          nodeId: host.nodeId(),
          nodeConfig: host.nodeConfig,
          runConfig: slot.runConfig,
          shutdown: slot.shutdown,
        };
      }),
      pushResult: guard(async (req, ctx) => {
        const slot = slotOf(ctx);
        if (!req.message) throw new PollenError('INVALID_REQUEST', 'PushResult needs a message');
        await host.onResult(slot, req.message);
        return {};
      }),
      missingChunks: guard(async (req, ctx) => {
        slotOf(ctx);
        return serveMissingChunks(host.chunks, req);
      }),
      pushChunks: guard(async (requests, ctx) => {
        slotOf(ctx);
        return servePushChunks(host.chunks, requests, PUSH_LIMITS);
      }),
      async *pullChunks(req, ctx) {
        try {
          slotOf(ctx);
          yield* servePullChunks(host.chunks, req);
        } catch (e) {
          throw toConnectError(e);
        }
      },
    });
  };
}
