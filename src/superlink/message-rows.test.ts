/** Message rows: each kind built by one function, and read back as the message it stores. */
import { describe, expect, it } from 'vitest';
import { instruction } from '../../test/support/runs.js';
import { SERVER_NODE_ID } from '../sdk/message.js';
import { EMPTY_PAYLOAD, instructionRow, replyRow, toMessage, withinBudget } from './message-rows.js';

const T = 1_700_000_000_000;
const chunk = 'c'.repeat(64);

describe('message rows', () => {
  it('stores an instruction from the ServerApp to its node, expiring after its ttl, without its bytes', () => {
    const input = instruction('m1', 'n1', { groupId: 'g', createdAt: T, ttlMs: 500, chunkIds: [chunk] });
    const row = instructionRow('run-1', input);
    expect(row).toEqual({
      message_id: 'm1',
      run_id: 'run-1',
      kind: 'instruction',
      src_node_id: SERVER_NODE_ID,
      dst_node_id: 'n1',
      reply_to: null,
      group_id: 'g',
      message_type: 'train',
      created_at: T,
      ttl_ms: 500,
      expires_at: T + 500,
      delivered_at: null,
      payload: EMPTY_PAYLOAD,
      chunk_ids: JSON.stringify([chunk]),
      size_bytes: 4,
    });
    expect(toMessage(row, input.payload)).toEqual({
      ...input,
      runId: 'run-1',
      kind: 'instruction',
      srcNodeId: SERVER_NODE_ID,
      replyTo: null,
      expiresAt: T + 500,
    });
  });

  it("stores a reply to the ServerApp with its instruction's run, group, type and expiry", () => {
    const ins = { run_id: 'run-1', group_id: 'g', message_type: 'evaluate', expires_at: T + 500 };
    const payload = new Uint8Array(9);
    const row = replyRow('n1', ins, { messageId: 'r1', replyTo: 'm1', payload, chunkIds: [] }, T + 100);
    expect(row).toMatchObject({
      message_id: 'r1',
      run_id: 'run-1',
      kind: 'reply',
      src_node_id: 'n1',
      dst_node_id: SERVER_NODE_ID,
      reply_to: 'm1',
      group_id: 'g',
      message_type: 'evaluate',
      // Made now (no time given): it lives what is left of the instruction's life.
      created_at: T + 100,
      ttl_ms: 400,
      expires_at: T + 500,
      delivered_at: null,
      payload: EMPTY_PAYLOAD,
      chunk_ids: '[]',
      size_bytes: 9,
    });
    const late = replyRow(
      'n1',
      ins,
      { messageId: 'r2', replyTo: 'm1', createdAt: T + 900, payload, chunkIds: [] },
      T,
    );
    expect(late).toMatchObject({ created_at: T + 900, ttl_ms: 0, expires_at: T + 500 });
    expect(toMessage(row, payload)).toMatchObject({ kind: 'reply', replyTo: 'm1', payload, chunkIds: [] });
  });

  it('claims the longest prefix within a byte budget, and always at least one message', () => {
    const rows = [3, 4, 5].map((size, i) => ({ id: i, size }));
    expect(withinBudget(rows, 7).map((r) => r.id)).toEqual([0, 1]);
    expect(withinBudget(rows, 12).map((r) => r.id)).toEqual([0, 1, 2]);
    expect(withinBudget(rows, 1).map((r) => r.id)).toEqual([0]);
    expect(withinBudget([], 1)).toEqual([]);
  });
});
