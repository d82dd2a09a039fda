/**
 * Messages as the SuperLink stores them: what callers hand in (instructions from a ServerApp,
 * replies from a node), the one row each becomes, the message read back from a row, and the
 * checks on a payload. A row carries everything but the payload bytes, which the message queue
 * keeps in memory; the row keeps their size.
 */
import { PollenError } from '../errors.js';
import { SERVER_NODE_ID } from '../sdk/message.js';
import type { LinkSchema } from './state-schema.js';

export type MessageRow = LinkSchema['messages'];

export interface InstructionInput {
  messageId: string;
  dstNodeId: string;
  groupId: string;
  messageType: string;
  /** Epoch ms; the instruction expires at createdAt + ttlMs. */
  createdAt: number;
  ttlMs: number;
  /** The serialized message. */
  payload: Uint8Array;
  /** sha256 (hex) of each chunk the payload references. */
  chunkIds: string[];
}
export interface ReplyInput {
  messageId: string;
  /** The instruction this answers; run, group, type and expiry are taken from it. */
  replyTo: string;
  /** Epoch ms; the SuperLink's clock if left out. */
  createdAt?: number;
  payload: Uint8Array;
  chunkIds: string[];
}

export interface StoredMessage {
  messageId: string;
  runId: string;
  kind: 'instruction' | 'reply';
  srcNodeId: string;
  dstNodeId: string;
  /** null for an instruction. */
  replyTo: string | null;
  groupId: string;
  messageType: string;
  createdAt: number;
  ttlMs: number;
  expiresAt: number;
  payload: Uint8Array;
  chunkIds: string[];
}
export interface Instruction extends StoredMessage {
  kind: 'instruction';
  replyTo: null;
}
export interface StoredReply extends StoredMessage {
  kind: 'reply';
  replyTo: string;
}
/** Made by the SuperLink when an instruction can no longer be answered: returned exactly once. */
export interface SynthesizedErrorReply {
  kind: 'error';
  runId: string;
  replyTo: string;
  /** The node the instruction was sent to (the one that did not answer). */
  dstNodeId: string;
  groupId: string;
  messageType: string;
  error: { code: 'NODE_UNAVAILABLE' | 'MESSAGE_EXPIRED'; reason: string };
}
export type PulledReply = StoredReply | SynthesizedErrorReply;

/** What the store keeps of a payload (the bytes are in the message queue's memory). */
export const EMPTY_PAYLOAD = Buffer.alloc(0);

/** The columns of an instruction that a reply inherits. */
export type AnsweredInstruction = Pick<MessageRow, 'run_id' | 'group_id' | 'message_type' | 'expires_at'>;

/** Where a message goes and when it expires: the columns that differ between the two kinds. */
type Routing = Omit<MessageRow, 'message_id' | 'delivered_at' | 'payload' | 'chunk_ids' | 'size_bytes'>;

/** The row of an instruction a ServerApp sends to `it.dstNodeId` in run `runId`. */
export function instructionRow(runId: string, it: InstructionInput): MessageRow {
  return messageRow(it, {
    run_id: runId,
    kind: 'instruction',
    src_node_id: SERVER_NODE_ID,
    dst_node_id: it.dstNodeId,
    reply_to: null,
    group_id: it.groupId,
    message_type: it.messageType,
    created_at: it.createdAt,
    ttl_ms: it.ttlMs,
    expires_at: it.createdAt + it.ttlMs,
  });
}

/** The row of node `nodeId`'s reply to instruction `ins`: run, group, type and expiry are its. */
export function replyRow(nodeId: string, ins: AnsweredInstruction, it: ReplyInput, now: number): MessageRow {
  const createdAt = it.createdAt ?? now;
  return messageRow(it, {
    run_id: ins.run_id,
    kind: 'reply',
    src_node_id: nodeId,
    dst_node_id: SERVER_NODE_ID,
    reply_to: it.replyTo,
    group_id: ins.group_id,
    message_type: ins.message_type,
    created_at: createdAt,
    ttl_ms: Math.max(0, ins.expires_at - createdAt),
    expires_at: ins.expires_at,
  });
}

function messageRow(
  it: { messageId: string; payload: Uint8Array; chunkIds: string[] },
  routing: Routing,
): MessageRow {
  return {
    message_id: it.messageId,
    ...routing,
    delivered_at: null,
    payload: EMPTY_PAYLOAD,
    chunk_ids: JSON.stringify(it.chunkIds),
    size_bytes: it.payload.byteLength,
  };
}

/** The message a row stores, with its payload (kept apart, in memory). */
export function toMessage(r: MessageRow, payload: Uint8Array): StoredMessage {
  return {
    messageId: r.message_id,
    runId: r.run_id,
    kind: r.kind,
    srcNodeId: r.src_node_id,
    dstNodeId: r.dst_node_id,
    replyTo: r.reply_to,
    groupId: r.group_id,
    messageType: r.message_type,
    createdAt: r.created_at,
    ttlMs: r.ttl_ms,
    expiresAt: r.expires_at,
    payload,
    chunkIds: JSON.parse(r.chunk_ids),
  };
}

/** The longest prefix of `rows` within `budget` payload bytes (at least one row). */
export function withinBudget<T extends { size: number }>(rows: T[], budget: number): T[] {
  let bytes = 0;
  let n = 0;
  for (const r of rows) {
    if (n > 0 && bytes + r.size > budget) break;
    bytes += r.size;
    n++;
  }
  return rows.slice(0, n);
}

export function checkTiming(createdAt: unknown, ttlMs: unknown): void {
  if (typeof createdAt !== 'number' || !Number.isFinite(createdAt) || createdAt < 0)
    throw new PollenError('MESSAGE_INVALID', 'Message createdAt must be a time in milliseconds');
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs < 0)
    throw new PollenError('MESSAGE_INVALID', 'Message ttlMs must be a non-negative number');
}

export function checkPayload(
  messageId: string,
  payload: Uint8Array,
  chunkIds: string[],
  maxMessageBytes: number,
): void {
  if (!(payload instanceof Uint8Array))
    throw new PollenError('MESSAGE_INVALID', `Message ${messageId} payload must be bytes`);
  if (payload.byteLength > maxMessageBytes)
    throw new PollenError(
      'MESSAGE_TOO_LARGE',
      `Message ${messageId} is ${payload.byteLength} bytes; the limit is ${maxMessageBytes}`,
      { data: { messageId, sizeBytes: payload.byteLength, maxBytes: maxMessageBytes } },
    );
  if (!Array.isArray(chunkIds) || !chunkIds.every((c) => typeof c === 'string' && /^[0-9a-f]{64}$/.test(c)))
    throw new PollenError('MESSAGE_INVALID', `Message ${messageId} chunk ids must be sha256 hex strings`);
}

export function duplicateMessage(messageId?: string): PollenError {
  return new PollenError(
    'MESSAGE_DUPLICATE',
    messageId ? `Message id ${messageId} is already used` : 'A message id is already used',
    { data: { messageId } },
  );
}

export function duplicateReply(replyTo: string): PollenError {
  return new PollenError('REPLY_DUPLICATE', `Instruction ${replyTo} is already answered`, {
    data: { messageId: replyTo },
  });
}
