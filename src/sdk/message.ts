/**
 * Message: the unit of work between a ServerApp and its ClientApps (Flower's Message). A message
 * carries either content (a RecordDict) or an error, plus metadata that says where it goes and
 * what it answers. Ids are strings; the ServerApp side is SERVER_NODE_ID.
 */
import { randomUUID } from 'node:crypto';
import { PollenError } from '../errors.js';
import { RecordDict } from './records.js';

export type MessageType = 'train' | 'evaluate' | 'query';
export const MESSAGE_TYPES: readonly MessageType[] = Object.freeze(['train', 'evaluate', 'query']);

/**
 * The node id of the ServerApp / SuperLink side.
 *
 * @example
 * ```ts
 * const context = createContext({ runId: 'sim', nodeId: SERVER_NODE_ID });
 * ```
 */
export const SERVER_NODE_ID = '0';
/** Default time to live of a new message: one hour (as in Flower). */
export const DEFAULT_TTL_SECONDS = 3600;

export interface Metadata {
  readonly runId: string;
  readonly messageId: string;
  readonly srcNodeId: string;
  readonly dstNodeId: string;
  /** The id of the message this one answers; '' for an instruction. */
  readonly replyToMessageId: string;
  /** Groups the messages of one step, e.g. 'round-3'. */
  readonly groupId: string;
  readonly ttlSeconds: number;
  readonly messageType: MessageType;
  /** Milliseconds since the Unix epoch. */
  readonly createdAt: number;
}

/** An error reply: a stable code (e.g. 'CLIENT_APP_RAISED_EXCEPTION') and a public reason. */
export interface MessageError {
  readonly code: string;
  readonly reason: string;
}

function invalid(message: string): PollenError {
  return new PollenError('MESSAGE_INVALID', message);
}

function checkMetadata(m: Metadata): Readonly<Metadata> {
  for (const key of ['runId', 'messageId', 'srcNodeId', 'dstNodeId', 'replyToMessageId', 'groupId'] as const)
    if (typeof m[key] !== 'string' || m[key].length > 256)
      throw invalid(`Message ${key} must be a string of at most 256 characters`);
  if (m.messageId === '') throw invalid('Message messageId must not be empty');
  if (m.dstNodeId === '') throw invalid('Message dstNodeId must not be empty');
  if (!MESSAGE_TYPES.includes(m.messageType))
    throw invalid(`Message messageType must be one of ${MESSAGE_TYPES.join(', ')}`);
  if (typeof m.ttlSeconds !== 'number' || !Number.isFinite(m.ttlSeconds) || m.ttlSeconds < 0)
    throw invalid('Message ttlSeconds must be a non-negative number');
  if (typeof m.createdAt !== 'number' || !Number.isFinite(m.createdAt) || m.createdAt < 0)
    throw invalid('Message createdAt must be a time in milliseconds');
  return Object.freeze({ ...m });
}

export interface CreateMessageOptions {
  content: RecordDict;
  dstNodeId: string;
  messageType: MessageType;
  groupId?: string;
  ttlSeconds?: number;
  /** Usually left out: the Grid stamps its run id on send. */
  runId?: string;
}

export type MessageInit =
  | { metadata: Metadata; content: RecordDict; error?: undefined }
  | { metadata: Metadata; error: MessageError; content?: undefined };

/**
 * The unit of work between a ServerApp and its ClientApps (Flower's `Message`): metadata (where
 * it goes, what it answers) and either content (a RecordDict) or an error. Immutable.
 *
 * @example
 * ```ts
 * const content = new RecordDict({ arrays, config: new ConfigRecord({ 'server-round': 1 }) });
 * const messages = (await grid.nodeIds()).map((dstNodeId) =>
 *   Message.create({ dstNodeId, messageType: 'train', content }),
 * );
 * for (const reply of await grid.sendAndReceive(messages))
 *   if (reply.hasContent()) console.log(reply.content.getMetricRecord('metrics')?.toObject());
 * ```
 */
export class Message {
  readonly metadata: Readonly<Metadata>;
  readonly content: RecordDict | undefined;
  readonly error: MessageError | undefined;

  constructor(init: MessageInit) {
    this.metadata = checkMetadata(init.metadata);
    if ((init.content === undefined) === (init.error === undefined))
      throw invalid('A message holds either content or an error');
    if (init.content !== undefined && !(init.content instanceof RecordDict))
      throw invalid('Message content must be a RecordDict');
    if (init.error !== undefined) {
      const { code, reason } = init.error;
      if (typeof code !== 'string' || code === '' || typeof reason !== 'string')
        throw invalid('A message error needs a code and a reason');
      this.error = Object.freeze({ code, reason });
    } else this.error = undefined;
    this.content = init.content;
  }

  /** A new instruction from the ServerApp to the node `dstNodeId`. */
  static create(options: CreateMessageOptions): Message {
    return new Message({
      metadata: {
        runId: options.runId ?? '',
        messageId: randomUUID(),
        srcNodeId: SERVER_NODE_ID,
        dstNodeId: options.dstNodeId,
        replyToMessageId: '',
        groupId: options.groupId ?? '',
        ttlSeconds: options.ttlSeconds ?? DEFAULT_TTL_SECONDS,
        messageType: options.messageType,
        createdAt: Date.now(),
      },
      content: options.content,
    });
  }

  hasContent(): this is Message & { content: RecordDict } {
    return this.content !== undefined;
  }

  hasError(): this is Message & { error: MessageError } {
    return this.error !== undefined;
  }

  /** The content, or MESSAGE_INVALID if this message carries an error. */
  get contentOrThrow(): RecordDict {
    if (this.content === undefined)
      throw invalid(`Message ${this.metadata.messageId} carries an error: ${this.error?.code}`);
    return this.content;
  }

  /** True once the message's time to live has passed. */
  isExpired(now = Date.now()): boolean {
    return now >= this.metadata.createdAt + this.metadata.ttlSeconds * 1000;
  }

  /** The same message with some metadata replaced (a new object; messages are immutable). */
  withMetadata(patch: Partial<Metadata>): Message {
    const metadata = { ...this.metadata, ...patch };
    return this.content !== undefined
      ? new Message({ metadata, content: this.content })
      : new Message({ metadata, error: this.error! });
  }

  #replyMetadata(now: number): Metadata {
    const m = this.metadata;
    // The reply expires when the instruction does (as in Flower).
    const remaining = Math.max(0, (m.createdAt + m.ttlSeconds * 1000 - now) / 1000);
    return {
      runId: m.runId,
      messageId: randomUUID(),
      srcNodeId: m.dstNodeId,
      dstNodeId: m.srcNodeId,
      replyToMessageId: m.messageId,
      groupId: m.groupId,
      ttlSeconds: remaining,
      messageType: m.messageType,
      createdAt: now,
    };
  }

  /** A reply to this message: source and destination swapped, same run, group and type. */
  createReply(content: RecordDict): Message {
    return new Message({ metadata: this.#replyMetadata(Date.now()), content });
  }

  createErrorReply(error: MessageError): Message {
    return new Message({ metadata: this.#replyMetadata(Date.now()), error });
  }
}
