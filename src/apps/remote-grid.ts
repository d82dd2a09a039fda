/**
 * The Grid a ServerApp process gets: ServerAppIo calls to its SuperLink. Arrays travel as chunks
 * pushed before the instructions that reference them; replies' chunks are pulled only when
 * missing. It counts what each round moves (bytes) and how its messages ended (replies with
 * content, failures) for the run's metrics.
 */
import type { Client } from '@connectrpc/connect';
import { isPollenError, PollenError } from '../errors.js';
import type { ServerAppIo } from '../gen/pollen/v1/appio_pb.js';
import type { Grid, SendAndReceiveOptions } from '../sdk/app.js';
import { MESSAGE_TYPES, Message, type MessageType, SERVER_NODE_ID } from '../sdk/message.js';
import type { RoundReport } from '../sdk/report.js';
import { KERNEL_MEMORY_GRID } from '../strategies/kernel-memory.js';
import { downloadChunks, uploadMessages } from '../transport/chunk-transfer.js';
import type { ChunkTransport } from '../transport/chunk-transport.js';
import { isScopeName, MemoryChunkStore } from '../transport/chunks.js';
import { fromConnectError } from '../transport/errors.js';
import { chunkIdsOf, messageFromWire, type WireMessage } from '../transport/wire.js';

const MAX_TIMER_MS = 2 ** 31 - 1;
const POLL_WAIT_MS = 10_000;
/** Most chunk ids remembered as sent or received (a hint only: forgetting costs a PUT). */
const MAX_KNOWN_IDS = 100_000;

export function wireBytes(wire: WireMessage): number {
  let n = 0;
  if (wire.body.case !== 'content') return n;
  for (const record of wire.body.value.records)
    if (record.record.case === 'arrays') for (const a of record.record.value.arrays) n += Number(a.nbytes);
  return n;
}

export class RemoteGrid implements Grid {
  readonly runId: string;
  /** Its sendAndReceive receives replies into the kernel's memory when asked (Strategy.start does). */
  readonly [KERNEL_MEMORY_GRID] = true;
  readonly #client: Client<typeof ServerAppIo>;
  readonly #chunks: ChunkTransport;
  #stopped = false;
  #bytesSent = 0;
  #bytesReceived = 0;
  /** Replies with content, and error replies or unanswered messages, since the last report. */
  #replies = 0;
  #failures = 0;
  /** Chunks this grid sent or received: the SuperLink may hold them, so they are asked about. */
  readonly #known = new Set<string>();

  /** `chunks` moves the arrays' chunks to and from the SuperLink (RpcChannel.chunks). */
  constructor(client: Client<typeof ServerAppIo>, chunks: ChunkTransport, runId: string) {
    this.#client = client;
    this.#chunks = chunks;
    this.runId = runId;
  }

  /** True once the SuperLink said the run was stopped. */
  get stopped(): boolean {
    return this.#stopped;
  }

  async #call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw fromConnectError(e);
    }
  }

  async nodeIds(): Promise<string[]> {
    const { nodeIds } = await this.#call(() => this.#client.getNodes({}));
    return [...nodeIds].sort();
  }

  #remember(ids: Iterable<string>): void {
    for (const id of ids) {
      if (this.#known.size >= MAX_KNOWN_IDS) this.#known.clear();
      this.#known.add(id);
    }
  }

  async send(messages: Iterable<Message>): Promise<string[]> {
    const stamped: Message[] = [];
    for (const message of messages) {
      if (!(message instanceof Message) && !isMessageLike(message))
        throw new PollenError('MESSAGE_INVALID', 'send() takes Message objects');
      const m = message.metadata;
      if (!message.content)
        throw new PollenError('MESSAGE_INVALID', `Message ${m.messageId}: an instruction must carry content`);
      if (m.replyToMessageId !== '')
        throw new PollenError('MESSAGE_INVALID', 'A reply cannot be sent as an instruction');
      if (m.srcNodeId !== SERVER_NODE_ID)
        throw new PollenError('MESSAGE_INVALID', `The source must be the server (${SERVER_NODE_ID})`);
      stamped.push(message.withMetadata({ runId: this.runId }));
    }
    // Chunks are hashed while the previous ones are on the wire. A model this grid has not sent
    // or received before (a new aggregate) is new to the SuperLink: no MissingChunks for it.
    const known = this.#known;
    const sent = await this.#call(() =>
      uploadMessages(this.#chunks, stamped, { fresh: (id) => !known.has(id) }),
    );
    const wires = sent.wires.map((w) => w.wire);
    for (const w of sent.wires) this.#remember(w.chunks.keys());
    const { messageIds } = await this.#call(() => this.#client.pushInstructions({ messages: wires }));
    for (const w of wires) this.#bytesSent += wireBytes(w);
    return messageIds;
  }

  async #decode(wires: WireMessage[], kernelMemory: boolean): Promise<Message[]> {
    // Each node's chunks come from that node's scope on the SuperLink and are verified here: a
    // node whose chunks do not match their ids spoils its own replies only.
    const store = new MemoryChunkStore();
    const failed = new Map<string, unknown>();
    const bySource = new Map<string, string[]>();
    for (const w of wires) {
      const src = w.metadata?.srcNodeId ?? '';
      bySource.set(src, [...(bySource.get(src) ?? []), ...chunkIdsOf(w)]);
    }
    for (const [src, ids] of bySource) {
      if (ids.length === 0) continue;
      try {
        await this.#call(() =>
          downloadChunks(this.#chunks, ids, store, {
            scope: { runId: this.runId, sourceNodeId: isScopeName(src) ? src : undefined },
          }),
        );
        this.#remember(ids);
      } catch (e) {
        if (isPollenError(e) && e.code === 'UNAVAILABLE') throw e;
        failed.set(src, e);
      }
    }
    const out: Message[] = [];
    for (const w of wires) {
      this.#bytesReceived += wireBytes(w);
      const failure = failed.get(w.metadata?.srcNodeId ?? '');
      let reply: Message;
      try {
        if (failure) throw failure;
        // Into the kernel's memory only when asked (SendAndReceiveOptions.kernelMemory): a block
        // there is reused once freed, and an app that kept only a view of a reply would see it change.
        reply = await messageFromWire(w, (id) => store.get(id), { kernelMemory });
      } catch (e) {
        // One node's unreadable reply is that node's failure, not the whole round's.
        reply = unreadable(w, e);
      }
      if (reply.hasContent()) this.#replies++;
      else this.#failures++;
      out.push(reply);
    }
    return out;
  }

  async #pull(ids: string[], waitMs: number, kernelMemory = false): Promise<Message[]> {
    const res = await this.#call(() => this.#client.pullReplies({ messageIds: ids, waitMs }));
    if (res.runStopped) this.#stopped = true;
    return this.#decode(res.messages, kernelMemory);
  }

  async pull(messageIds: Iterable<string>): Promise<Message[]> {
    return this.#pull([...messageIds], 0);
  }

  async sendAndReceive(messages: Iterable<Message>, options: SendAndReceiveOptions = {}): Promise<Message[]> {
    const batch = [...messages];
    const ids = await this.send(batch);
    const ttlMs = Math.max(0, ...batch.map((m) => m.metadata.ttlSeconds * 1000));
    const deadline = Date.now() + Math.min(options.timeoutMs ?? ttlMs, MAX_TIMER_MS);
    const waiting = new Set(ids);
    const replies: Message[] = [];
    while (waiting.size > 0 && !this.#stopped) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const wait = Math.min(left, POLL_WAIT_MS);
      for (const reply of await this.#pull([...waiting], wait, options.kernelMemory === true)) {
        waiting.delete(reply.metadata.replyToMessageId);
        replies.push(reply);
      }
    }
    if (this.#stopped) throw new PollenError('RUN_STOPPED', `Run ${this.runId} was stopped`);
    // Messages still unanswered at the deadline failed too (as a strategy's NO_REPLY).
    this.#failures += waiting.size;
    return replies;
  }

  /** Store a round's metrics with the bytes moved and the replies and failures since the previous report. */
  async reportRound(report: RoundReport): Promise<void> {
    const round = {
      round: report.round,
      metrics: Object.fromEntries(Object.entries(report.metrics).filter(([, v]) => Number.isFinite(v))),
      nodeIds: [...report.nodeIds],
      bytesSent: BigInt(this.#bytesSent),
      bytesReceived: BigInt(this.#bytesReceived),
      replies: this.#replies,
      failures: this.#failures,
    };
    this.#bytesSent = 0;
    this.#bytesReceived = 0;
    this.#replies = 0;
    this.#failures = 0;
    await this.#call(() => this.#client.reportRound({ round }));
  }
}

/** An error reply standing for a reply that could not be decoded (or rethrow when even that fails). */
function unreadable(w: WireMessage, e: unknown): Message {
  const md = w.metadata;
  if (!isPollenError(e) || !md) throw e;
  // The node's own metadata may be what is malformed: keep only what the SuperLink set or checked.
  const str = (v: string, fallback = '') => (typeof v === 'string' && v.length <= 256 ? v : fallback);
  return new Message({
    metadata: {
      runId: str(md.runId),
      messageId:
        str(md.messageId, `unreadable-${str(md.replyToMessageId)}`) || `unreadable-${md.replyToMessageId}`,
      srcNodeId: str(md.srcNodeId),
      dstNodeId: SERVER_NODE_ID,
      replyToMessageId: str(md.replyToMessageId),
      groupId: str(md.groupId),
      ttlSeconds: 0,
      messageType: MESSAGE_TYPES.includes(md.messageType as MessageType)
        ? (md.messageType as MessageType)
        : 'train',
      createdAt: Date.now(),
    },
    error: { code: e.code, reason: `The reply could not be read: ${e.message}` },
  });
}

/** A Message made by a bundled copy of the SDK (instanceof fails across copies). */
function isMessageLike(m: unknown): m is Message {
  return (
    typeof m === 'object' &&
    m !== null &&
    'metadata' in m &&
    typeof (m as Message).withMetadata === 'function'
  );
}
