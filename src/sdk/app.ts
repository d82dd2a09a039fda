/**
 * Apps and the Grid (Flower's ClientApp, ServerApp and Grid).
 *
 * A ClientApp runs at a site: it registers handlers for train / evaluate / query messages and
 * answers each message with a reply. A ServerApp's `main(grid, context)` drives the federation
 * through a Grid: it lists nodes, sends messages and collects replies. InMemoryGrid routes
 * messages to ClientApps in the same process, for tests and simulation; the SuperLink provides
 * the networked Grid.
 */
import { PollenError } from '../errors.js';
import { clip } from '../util/text.js';
import { CLIENT_ARTEFACTS } from './artefacts.js';
import { type Context, createContext, type UserConfigValue } from './context.js';
import { Message, type MessageType, SERVER_NODE_ID } from './message.js';
import { RecordDict } from './records.js';

/**
 * Codes a ClientApp puts in error replies (`reply.error.code`).
 *
 * @example
 * ```ts
 * for (const reply of await grid.sendAndReceive(messages))
 *   if (reply.error?.code === ReplyErrorCode.CLIENT_APP_RAISED_EXCEPTION) console.error(reply.error.reason);
 * ```
 */
export const ReplyErrorCode = {
  /** A handler threw; the reason holds its public message. */
  CLIENT_APP_RAISED_EXCEPTION: 'CLIENT_APP_RAISED_EXCEPTION',
  /** No handler is registered for the message type. */
  UNSUPPORTED_MESSAGE_TYPE: 'UNSUPPORTED_MESSAGE_TYPE',
  /** The message is not for this node or run, carries no content, or the handler's reply is wrong. */
  MESSAGE_INVALID: 'MESSAGE_INVALID',
  /** The message's time to live passed before it was handled. */
  MESSAGE_EXPIRED: 'MESSAGE_EXPIRED',
} as const;
export type ReplyErrorCode = (typeof ReplyErrorCode)[keyof typeof ReplyErrorCode];

/** A message that carries content (the only kind a handler is given). */
export type ContentMessage = Message & { readonly content: RecordDict };

/** Return the reply's content (it is wrapped with `message.createReply`) or a full reply Message. */
export type Handler = (
  message: ContentMessage,
  context: Context,
) => RecordDict | Message | Promise<RecordDict | Message>;

export interface ClientAppOptions {
  train?: Handler;
  evaluate?: Handler;
  query?: Handler;
  /**
   * What an error reply says about a thrown error: 'message' (default) sends the error's name and
   * message (never the stack), 'none' only that the app failed, for sites whose error messages
   * might reveal local data.
   */
  errorDetail?: 'message' | 'none';
}

const MAX_REASON_LENGTH = 1000;

/**
 * Brands that survive SDK copies: a bundled app carries its own copy of these classes, so the
 * host recognises its apps by brand (`Symbol.for` is process-wide), not by `instanceof`.
 */
export const CLIENT_APP_BRAND: unique symbol = Symbol.for('pollen.ClientApp') as never;
export const SERVER_APP_BRAND: unique symbol = Symbol.for('pollen.ServerApp') as never;

/**
 * The app that runs at each site (Flower's `ClientApp`): one handler per message type. A handler
 * gets the message and the node's Context and returns the reply's content; a thrown error becomes
 * an error reply, never a crash of the node.
 *
 * @example
 * ```ts
 * export default new ClientApp({
 *   async train(message, context) {
 *     const arrays = message.content.getArrayRecord('arrays')!;
 *     const { weights, loss, n } = await trainLocally(arrays, context.nodeConfig['data-path']);
 *     return new RecordDict({
 *       arrays: weights,
 *       metrics: new MetricRecord({ 'num-examples': n, 'train-loss': loss }),
 *     });
 *   },
 * });
 * ```
 */
export class ClientApp {
  get [CLIENT_APP_BRAND](): true {
    return true;
  }

  readonly #handlers = new Map<MessageType, Handler>();
  readonly #errorDetail: 'message' | 'none';

  constructor(options: ClientAppOptions = {}) {
    this.#errorDetail = options.errorDetail ?? 'message';
    for (const type of ['train', 'evaluate', 'query'] as const) {
      const h = options[type];
      if (h !== undefined) this.#register(type, h);
    }
  }

  #register(type: MessageType, handler: Handler): this {
    if (typeof handler !== 'function')
      throw new PollenError('INVALID_ARGUMENT', `The ${type} handler must be a function`);
    if (this.#handlers.has(type))
      throw new PollenError('INVALID_ARGUMENT', `A ${type} handler is already registered`);
    this.#handlers.set(type, handler);
    return this;
  }

  train(handler: Handler): this {
    return this.#register('train', handler);
  }

  evaluate(handler: Handler): this {
    return this.#register('evaluate', handler);
  }

  query(handler: Handler): this {
    return this.#register('query', handler);
  }

  /** The message types this app answers. */
  get messageTypes(): MessageType[] {
    return [...this.#handlers.keys()];
  }

  /**
   * Answer one message. Never throws: a refused message or a failing handler becomes an error
   * reply, so one bad round never takes the node down.
   */
  async handle(message: Message, context: Context): Promise<Message> {
    const fail = (code: ReplyErrorCode, reason: string): Message =>
      message.createErrorReply({ code, reason });
    const m = message.metadata;
    if (m.dstNodeId !== context.nodeId)
      return fail(
        ReplyErrorCode.MESSAGE_INVALID,
        `Message is for node ${m.dstNodeId}, not ${context.nodeId}`,
      );
    if (m.runId !== context.runId)
      return fail(ReplyErrorCode.MESSAGE_INVALID, `Message is for run ${m.runId}, not ${context.runId}`);
    if (message.isExpired())
      return fail(ReplyErrorCode.MESSAGE_EXPIRED, 'Message expired before it was handled');
    if (!message.hasContent()) return fail(ReplyErrorCode.MESSAGE_INVALID, 'Message carries no content');
    const handler = this.#handlers.get(m.messageType);
    if (handler === undefined)
      return fail(ReplyErrorCode.UNSUPPORTED_MESSAGE_TYPE, `This ClientApp has no ${m.messageType} handler`);
    let result: RecordDict | Message;
    try {
      result = await handler(message, context);
    } catch (e) {
      return fail(ReplyErrorCode.CLIENT_APP_RAISED_EXCEPTION, this.#reason(e));
    }
    if (result instanceof RecordDict) return message.createReply(result);
    if (
      result instanceof Message &&
      result.metadata.replyToMessageId === m.messageId &&
      result.metadata.dstNodeId === m.srcNodeId &&
      result.metadata.srcNodeId === m.dstNodeId &&
      result.metadata.runId === m.runId &&
      result.metadata.messageType === m.messageType
    )
      return result;
    return fail(
      ReplyErrorCode.MESSAGE_INVALID,
      `The ${m.messageType} handler must return a RecordDict or message.createReply(...)`,
    );
  }

  #reason(e: unknown): string {
    if (this.#errorDetail === 'none') return 'The ClientApp raised an exception';
    const text =
      e instanceof PollenError
        ? `${e.code}: ${e.message}`
        : e instanceof Error
          ? `${e.name}: ${e.message}`
          : `Thrown value: ${String(e)}`;
    return clip(text, MAX_REASON_LENGTH);
  }
}

export interface SendAndReceiveOptions {
  /** Stop waiting after this long and return the replies received so far (default: the messages' TTL). */
  timeoutMs?: number;
  /**
   * Receive the replies' large float32 arrays (1 MiB or more) into the aggregation kernel's
   * memory, where FedAvg's kernel and its threads read them in place, with 2 MiB pages: about
   * twice the speed of arrays it must copy in (docs/strategies.md). Their blocks are freed when
   * the arrays are garbage-collected or released (Strategy.start asks a ServerApp's own grid for
   * its training replies and releases them once aggregated): keep an array itself, or a
   * `slice()`, never only a view of it. A grid may ignore it (an InMemoryGrid does: its replies
   * are the ClientApps' own arrays).
   */
  kernelMemory?: boolean;
}

/** How a ServerApp reaches the nodes of its run. */
export interface Grid {
  readonly runId: string;
  /** Ids of the nodes that take part in the run. */
  nodeIds(): Promise<string[]>;
  /** Queue instructions for their nodes; resolves to their message ids. The Grid stamps its run id. */
  send(messages: Iterable<Message>): Promise<string[]>;
  /** Replies to the given instruction ids that have arrived; each reply is returned once. */
  pull(messageIds: Iterable<string>): Promise<Message[]>;
  /** Send, then wait for all replies or the timeout; resolves to the replies that arrived. */
  sendAndReceive(messages: Iterable<Message>, options?: SendAndReceiveOptions): Promise<Message[]>;
}

export type ServerMain = (grid: Grid, context: Context) => void | Promise<void>;

/**
 * The app that drives a run (Flower's `ServerApp`): its main function gets the run's Grid and
 * Context, usually to start a strategy.
 *
 * @example
 * ```ts
 * export default new ServerApp(async (grid, context) => {
 *   await new FedAvg().start({ grid, initialArrays, numRounds: Number(context.runConfig['num-rounds']) });
 * });
 * ```
 */
export class ServerApp {
  get [SERVER_APP_BRAND](): true {
    return true;
  }

  #main: ServerMain | undefined;

  constructor(main?: ServerMain) {
    if (main !== undefined) this.main(main);
  }

  /** Register the app's entry point (Flower's `@app.main()`). */
  main(fn: ServerMain): this {
    if (typeof fn !== 'function') throw new PollenError('INVALID_ARGUMENT', 'main must be a function');
    if (this.#main !== undefined) throw new PollenError('INVALID_ARGUMENT', 'main is already registered');
    this.#main = fn;
    return this;
  }

  /** Run the registered main against a grid. */
  async run(grid: Grid, context: Context): Promise<void> {
    if (this.#main === undefined)
      throw new PollenError('INVALID_ARGUMENT', 'Register a main function first: serverApp.main(fn)');
    await this.#main(grid, context);
  }
}

export interface InMemoryNode {
  app: ClientApp;
  nodeConfig?: Record<string, UserConfigValue>;
}

export interface InMemoryGridOptions {
  runId: string;
  nodes: Readonly<Record<string, ClientApp | InMemoryNode>>;
  runConfig?: Record<string, UserConfigValue>;
  /**
   * Deep-copy content in both directions (default true), so apps cannot share memory by accident,
   * as over a network.
   */
  copy?: boolean;
}

interface NodeSlot {
  app: ClientApp;
  context: Context;
  queue: Promise<void>;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A Grid that routes messages to ClientApps in this process, for tests and simulations. Each
 * node handles its messages one at a time, in order, and keeps its Context (and so its state)
 * for the life of the grid.
 *
 * @example
 * ```ts
 * const runConfig = { 'num-rounds': 3 };
 * const grid = new InMemoryGrid({
 *   runId: 'sim',
 *   nodes: { '1': { app: clientApp, nodeConfig: { 'partition-id': 0 } }, '2': clientApp },
 *   runConfig,
 * });
 * await serverApp.run(grid, createContext({ runId: 'sim', nodeId: SERVER_NODE_ID, runConfig }));
 * ```
 */
export class InMemoryGrid implements Grid {
  readonly runId: string;
  readonly #nodes = new Map<string, NodeSlot>();
  readonly #copy: boolean;
  readonly #sent = new Set<string>();
  readonly #replies = new Map<string, Message>();
  readonly #waiters = new Set<() => void>();

  constructor(options: InMemoryGridOptions) {
    this.runId = options.runId;
    this.#copy = options.copy ?? true;
    for (const [nodeId, node] of Object.entries(options.nodes)) {
      if (nodeId === SERVER_NODE_ID)
        throw new PollenError('INVALID_ARGUMENT', `Node id ${SERVER_NODE_ID} is the server's`);
      const { app, nodeConfig } = node instanceof ClientApp ? { app: node, nodeConfig: {} } : node;
      if (!(app instanceof ClientApp))
        throw new PollenError('INVALID_ARGUMENT', `Node ${nodeId} needs a ClientApp`);
      const context = createContext({
        runId: options.runId,
        nodeId,
        nodeConfig: nodeConfig ?? {},
        runConfig: options.runConfig ?? {},
        // As on a real site: a ClientApp's outputs stay with it.
        artefacts: CLIENT_ARTEFACTS,
      });
      this.#nodes.set(nodeId, { app, context, queue: Promise.resolve() });
    }
  }

  /** The Context a node's handlers see (its state persists across messages). */
  nodeContext(nodeId: string): Context | undefined {
    return this.#nodes.get(nodeId)?.context;
  }

  async nodeIds(): Promise<string[]> {
    return [...this.#nodes.keys()].sort();
  }

  async send(messages: Iterable<Message>): Promise<string[]> {
    const batch = [...messages];
    const ids = new Set<string>();
    const stamped: Message[] = [];
    for (const message of batch) {
      if (!(message instanceof Message))
        throw new PollenError('MESSAGE_INVALID', 'send() takes Message objects');
      const m = message.metadata;
      const bad = (why: string): PollenError =>
        new PollenError('MESSAGE_INVALID', `Message ${m.messageId}: ${why}`);
      if (!message.hasContent()) throw bad('an instruction must carry content');
      if (m.replyToMessageId !== '') throw bad('a reply cannot be sent as an instruction');
      if (m.srcNodeId !== SERVER_NODE_ID) throw bad(`the source must be the server (${SERVER_NODE_ID})`);
      if (m.runId !== '' && m.runId !== this.runId)
        throw bad(`it belongs to run ${m.runId}, not ${this.runId}`);
      if (!this.#nodes.has(m.dstNodeId)) throw bad(`no node ${m.dstNodeId} in this run`);
      if (ids.has(m.messageId) || this.#sent.has(m.messageId)) throw bad('this message id was already sent');
      ids.add(m.messageId);
      stamped.push(message.withMetadata({ runId: this.runId }));
    }
    // Validate the whole batch before queueing any of it.
    for (const message of stamped) {
      this.#sent.add(message.metadata.messageId);
      const slot = this.#nodes.get(message.metadata.dstNodeId)!;
      slot.queue = slot.queue.then(() => this.#deliver(slot, message));
    }
    return stamped.map((m) => m.metadata.messageId);
  }

  async #deliver(slot: NodeSlot, message: Message): Promise<void> {
    const incoming =
      this.#copy && message.content
        ? new Message({ metadata: message.metadata, content: message.content.clone() })
        : message;
    let reply = await slot.app.handle(incoming, slot.context);
    if (this.#copy && reply.content)
      reply = new Message({ metadata: reply.metadata, content: reply.content.clone() });
    this.#replies.set(message.metadata.messageId, reply);
    for (const wake of this.#waiters) wake();
  }

  async pull(messageIds: Iterable<string>): Promise<Message[]> {
    const out: Message[] = [];
    for (const id of messageIds) {
      const reply = this.#replies.get(id);
      if (reply === undefined) continue;
      this.#replies.delete(id);
      out.push(reply);
    }
    return out;
  }

  async sendAndReceive(messages: Iterable<Message>, options: SendAndReceiveOptions = {}): Promise<Message[]> {
    const batch = [...messages];
    const ids = await this.send(batch);
    const ttlMs = Math.max(0, ...batch.map((m) => m.metadata.ttlSeconds * 1000));
    const timeoutMs = Math.min(options.timeoutMs ?? ttlMs, MAX_TIMER_MS);
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (ids.every((id) => this.#replies.has(id))) done();
      };
      const timer = setTimeout(() => done(), timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
      check();
    });
    return this.pull(ids);
  }
}
