/**
 * Replies from this node to the SuperLink: the reply's chunks go into the run's scope there (it
 * relays them unhashed to the ServerApp), then the message; both are retried while the SuperLink
 * is away or rate-limits the node, and after a node-key session ran out.
 */
import type { Logger } from 'pino';
import { isPollenError } from '../errors.js';
import { uploadChunks } from '../transport/chunk-transfer.js';
import type { ChunkTransport } from '../transport/chunk-transport.js';
import type { ChunkStore } from '../transport/chunks.js';
import { chunkIdsOf, type WireMessage, wireErrorReply } from '../transport/wire.js';
import { call, type FleetClient, transient, waitBeforeRetry } from './fleet-call.js';
import { type NodeTime, pause } from './node-time.js';

export interface RepliesOptions {
  fleet: FleetClient;
  /** The chunk routes of the same SuperLink (the bulk route where it has one). */
  fleetChunks: ChunkTransport;
  /** Where the chunks of replies from ClientApp processes wait. */
  chunks: ChunkStore;
  /** The node-key session, renewed when a push finds it expired. */
  session: { readonly hasSession: boolean; renew(): Promise<void> };
  nodeId(): string;
  time: NodeTime;
  log: Logger;
  /** Aborted when the node closes: no more retries. */
  signal: AbortSignal;
  onReply?: (runId: string, messageId: string, error?: string) => void;
}

/** Attempts after the first one, for the SuperLink away or failing. */
const RETRIES = 5;
/**
 * Attempts after the first one refused for this node's request rate. Such a refusal means the
 * SuperLink is up and takes the next request within about 1/rate seconds (it says when), while the
 * node's own polls draw on the same budget: a short pause, the one the SuperLink names, keeps the
 * reply in the queue instead of backing off for seconds and giving it up after five tries.
 */
const RATE_RETRIES = 240;
/** The pause after a rate refusal that names no wait (an older SuperLink), jittered down to half. */
const RATE_PAUSE_MS = 500;

export class Replies {
  constructor(private readonly o: RepliesOptions) {}

  /** Send a reply; `own` holds its chunks when they are not in the node's store (embedded mode). */
  async push(reply: WireMessage, own?: Map<string, Uint8Array>): Promise<void> {
    const { fleet, chunks, signal, fleetChunks } = this.o;
    const ids = chunkIdsOf(reply);
    const runId = reply.metadata?.runId ?? '';
    let rateRefusals = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        // Into the run's scope on the SuperLink, which relays them unhashed to the ServerApp.
        if (ids.length > 0)
          await call(() => uploadChunks(fleetChunks, own ?? { ids, source: chunks }, { scope: { runId } }));
        const { results } = await call(() => fleet.pushMessages({ messages: [reply] }));
        const r = results[0];
        this.o.onReply?.(runId, reply.metadata?.replyToMessageId ?? '', r?.errorCode || undefined);
        if (r?.errorCode)
          this.o.log.warn({ runId, code: r.errorCode, reason: r.errorMessage }, 'reply refused');
        for (const id of ids) await chunks.delete(id).catch(() => {});
        return;
      } catch (e) {
        if (isPollenError(e) && e.code === 'RATE_LIMITED' && rateRefusals < RATE_RETRIES && !signal.aborted) {
          rateRefusals++;
          attempt--; // not a failure of the SuperLink: the other budget stays
          const r = this.o.time.random();
          await pause(this.o.time, waitBeforeRetry(e, RATE_PAUSE_MS * (0.5 + r * 0.5), r), signal);
          if (signal.aborted) throw e;
          continue;
        }
        if (signal.aborted || attempt >= RETRIES) throw e;
        // The session ran out between renewals (e.g. the machine slept): open one and retry.
        if (isPollenError(e) && e.code === 'NODE_SESSION_EXPIRED' && this.o.session.hasSession) {
          await this.o.session.renew();
          continue;
        }
        if (isPollenError(e) && !transient(e)) throw e;
        await pause(this.o.time, Math.min(500 * 2 ** attempt, 10_000), signal);
        if (signal.aborted) throw e;
      }
    }
  }

  /** The error reply to `instruction`: the ServerApp hears at once why it gets no result. */
  error(instruction: WireMessage, code: string, reason: string): WireMessage {
    return wireErrorReply(
      instruction,
      { code, reason },
      { srcNodeId: this.o.nodeId(), now: this.o.time.now() },
    );
  }
}
