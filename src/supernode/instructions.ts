/**
 * Instructions from the SuperLink to the run's app, and the app's replies back. An instruction's
 * missing chunks are fetched, then it is queued for the run's ClientApp process (which pulls it
 * over ClientAppIo) or handled by the embedded app. Whatever goes wrong on the way becomes an
 * error reply, so the ServerApp hears of it at once instead of waiting for its timeout.
 */
import type { Logger } from 'pino';
import { PollenError } from '../errors.js';
import type { ClientApp } from '../sdk/app.js';
import { createContext, type UserConfigValue } from '../sdk/context.js';
import { downloadChunks } from '../transport/chunk-transfer.js';
import type { ChunkTransport } from '../transport/chunk-transport.js';
import type { ChunkStore } from '../transport/chunks.js';
import {
  chunkIdsOf,
  configFromWire,
  messageFromWire,
  messageToWire,
  type WireMessage,
} from '../transport/wire.js';
import type { Waiters } from '../util/waiters.js';
import type { AppSlot } from './clientappio-service.js';
import { call, localError } from './fleet-call.js';
import type { Replies } from './replies.js';
import type { RunSlots, Slot } from './run-slots.js';

export interface InstructionsOptions {
  /** The chunk routes of the same SuperLink (the bulk route where it has one). */
  fleetChunks: ChunkTransport;
  chunks: ChunkStore;
  slots: RunSlots;
  replies: Replies;
  tasks: Waiters;
  /** Embedded mode: handle every instruction with this app, in this process. */
  app?: ClientApp;
  nodeId(): string;
  nodeConfig: Record<string, UserConfigValue>;
  log: Logger;
  /** Aborted when the node closes. */
  signal: AbortSignal;
  onTask?: (runId: string, messageId: string, messageType: string) => void;
}

export class Instructions {
  constructor(private readonly o: InstructionsOptions) {}

  async handle(message: WireMessage): Promise<void> {
    const md = message.metadata;
    if (!md) return;
    const { chunks, app, fleetChunks } = this.o;
    this.o.onTask?.(md.runId, md.messageId, md.messageType);
    try {
      const slot = await this.o.slots.open(md.runId);
      const ids = chunkIdsOf(message);
      const missing = await chunks.missing(ids);
      if (missing.length > 0)
        await call(() => downloadChunks(fleetChunks, missing, chunks, { scope: { runId: md.runId } }));
      if (app) {
        this.#handleEmbedded(app, slot, message);
        return;
      }
      slot.inFlight.set(md.messageId, message);
      slot.queue.push(message);
      this.o.tasks.notify(md.runId);
    } catch (e) {
      const err = localError(e);
      this.o.log.warn(
        { runId: md.runId, code: err.code, reason: err.message },
        'instruction not delivered to the app',
      );
      await this.o.replies.push(this.o.replies.error(message, err.code, err.message)).catch(() => {});
    }
  }

  /** A reply of a ClientApp process (ClientAppIo's PushResult), sent on to the SuperLink. */
  async forward(slot: AppSlot, reply: WireMessage): Promise<void> {
    const s = slot as Slot;
    const md = reply.metadata;
    if (!md || !s.inFlight.has(md.replyToMessageId))
      throw new PollenError('MESSAGE_INVALID', 'The reply answers no instruction this app received');
    const instruction = s.inFlight.get(md.replyToMessageId);
    s.inFlight.delete(md.replyToMessageId);
    this.#logAppError(s.runId, reply);
    await this.o.replies.push(reply);
    if (instruction) await this.#dropChunks(chunkIdsOf(instruction));
  }

  /** The run's ClientApp process ended by itself: its open instructions get error replies. */
  appEnded(slot: Slot, why: string): void {
    this.o.log.warn({ runId: slot.runId, why }, 'ClientApp process ended');
    // Tell the ServerApp at once instead of letting it wait for the timeout.
    const { replies } = this.o;
    for (const instruction of [...slot.inFlight.values(), ...slot.queue])
      replies
        .push(replies.error(instruction, 'CLIENT_APP_CRASHED', `The ClientApp process ended (${why})`))
        .catch(() => {});
    slot.inFlight.clear();
    slot.queue.length = 0;
  }

  /**
   * An error reply of the app goes to the site's log too, as the reply says it: an app set to
   * `errorDetail: 'none'` keeps its error messages out of this log as well.
   */
  #logAppError(runId: string, reply: WireMessage): void {
    if (reply.body.case !== 'error') return;
    const { code, reason } = reply.body.value;
    this.o.log.warn(
      { runId, messageType: reply.metadata?.messageType, code, reason },
      'the ClientApp failed',
    );
  }

  /** Forget an answered instruction's chunks unless another pending instruction needs them. */
  async #dropChunks(ids: string[]): Promise<void> {
    const needed = this.o.slots.neededChunks();
    for (const id of ids) if (!needed.has(id)) await this.o.chunks.delete(id).catch(() => {});
  }

  /** Embedded mode: one instruction through the in-process ClientApp, in arrival order per run. */
  #handleEmbedded(app: ClientApp, slot: Slot, message: WireMessage): void {
    const { chunks, replies, signal, log } = this.o;
    slot.handling = (slot.handling ?? Promise.resolve()).then(async () => {
      let reply: WireMessage;
      let own: Map<string, Uint8Array> | undefined;
      try {
        slot.context ??= createContext({
          runId: slot.runId,
          nodeId: this.o.nodeId(),
          nodeConfig: this.o.nodeConfig,
          runConfig: configFromWire(slot.runConfig),
        });
        const incoming = await messageFromWire(message, (id) => chunks.get(id));
        ({ wire: reply, chunks: own } = messageToWire(await app.handle(incoming, slot.context)));
        this.#logAppError(slot.runId, reply);
      } catch (e) {
        const err = localError(e);
        reply = replies.error(message, err.code, err.message);
      }
      if (slot.shutdown || signal.aborted) return;
      await replies
        .push(reply, own)
        .catch((e) => log.warn({ runId: slot.runId, reason: String(e) }, 'reply not delivered'));
    });
  }
}
