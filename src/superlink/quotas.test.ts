import { describe, expect, it } from 'vitest';
import { isPollenError } from '../errors.js';
import { ByteBudget, ReplyQueues } from './quotas.js';

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return isPollenError(e) ? e.code : String(e);
  }
}

describe('ByteBudget', () => {
  it('reserves up to its limit, refuses past it with STORAGE_FULL and counts nothing then', () => {
    const b = new ByteBudget(100);
    b.reserve(60);
    expect(codeOf(() => b.reserve(41))).toBe('STORAGE_FULL');
    expect(b.used).toBe(60);
    b.reserve(40);
    expect(codeOf(() => b.admit(1))).toBe('STORAGE_FULL');
    b.release(50);
    expect(b.used).toBe(50);
    // What is on disk already counts even past the limit; nothing new fits until it goes.
    b.add(100);
    expect(codeOf(() => b.admit(0))).toBe('STORAGE_FULL');
    b.release(1_000);
    expect(b.used).toBe(0);
    expect(codeOf(() => new ByteBudget(-1))).toBe('INVALID_ARGUMENT');
  });
});

describe('ReplyQueues', () => {
  it('caps each node by count and bytes, alone, and releases on read, refusal and run end', () => {
    const q = new ReplyQueues({ nodeReplyQueue: 2, nodeReplyQueueBytes: 100 });
    q.reserve('a', 60);
    q.stored('r1', 'm1', 'a', 60);
    expect(codeOf(() => q.reserve('a', 41))).toBe('REPLY_QUEUE_FULL');
    q.reserve('a', 40);
    expect(codeOf(() => q.reserve('a', 0))).toBe('REPLY_QUEUE_FULL'); // the count
    expect(q.queued('a')).toEqual({ replies: 2, bytes: 100 });
    // Another node has its own room.
    q.reserve('b', 100);
    q.stored('r2', 'm3', 'b', 100);
    // The second reply of a was not stored after all.
    q.release('a', 40);
    expect(q.queued('a')).toEqual({ replies: 1, bytes: 60 });
    q.read('r1', 'm1');
    q.read('r1', 'm1'); // once
    expect(q.queued('a')).toEqual({ replies: 0, bytes: 0 });
    q.dropRun('r2');
    expect(q.queued('b')).toEqual({ replies: 0, bytes: 0 });
  });
});
