import { afterEach, describe, expect, it, vi } from 'vitest';
import { PollenError } from '../errors.js';
import { createContext } from './context.js';
import { DEFAULT_TTL_SECONDS, Message, type Metadata, SERVER_NODE_ID } from './message.js';
import { ConfigRecord, MetricRecord, RecordDict } from './records.js';

const content = (): RecordDict => new RecordDict({ config: new ConfigRecord({ lr: 0.1 }) });

function metadata(patch: Partial<Metadata> = {}): Metadata {
  return {
    runId: 'run-1',
    messageId: 'm-1',
    srcNodeId: SERVER_NODE_ID,
    dstNodeId: 'n1',
    replyToMessageId: '',
    groupId: 'round-1',
    ttlSeconds: 60,
    messageType: 'train',
    createdAt: 1_000,
    ...patch,
  };
}

function expectCode(fn: () => unknown, code: string, text?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PollenError);
    expect((e as PollenError).code).toBe(code);
    if (text) expect((e as PollenError).message).toMatch(text);
    return;
  }
  throw new Error(`expected ${code}`);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Message', () => {
  it('creates instructions with fresh ids and defaults', () => {
    const a = Message.create({
      content: content(),
      dstNodeId: 'n1',
      messageType: 'train',
      groupId: 'round-1',
    });
    const b = Message.create({ content: content(), dstNodeId: 'n2', messageType: 'evaluate' });
    expect(a.metadata.messageId).not.toBe(b.metadata.messageId);
    expect(a.metadata).toMatchObject({
      runId: '',
      srcNodeId: SERVER_NODE_ID,
      dstNodeId: 'n1',
      replyToMessageId: '',
      groupId: 'round-1',
      ttlSeconds: DEFAULT_TTL_SECONDS,
      messageType: 'train',
    });
    expect(a.hasContent()).toBe(true);
    expect(a.hasError()).toBe(false);
    expect(Object.isFrozen(a.metadata)).toBe(true);
  });

  it('makes replies that swap ends and expire with the instruction', () => {
    vi.useFakeTimers();
    vi.setSystemTime(1_000);
    const msg = new Message({ metadata: metadata(), content: content() });
    vi.setSystemTime(21_000); // 20 s later
    const reply = msg.createReply(new RecordDict({ metrics: new MetricRecord({ loss: 0.3 }) }));
    expect(reply.metadata).toMatchObject({
      runId: 'run-1',
      srcNodeId: 'n1',
      dstNodeId: SERVER_NODE_ID,
      replyToMessageId: 'm-1',
      groupId: 'round-1',
      messageType: 'train',
      ttlSeconds: 40,
      createdAt: 21_000,
    });
    expect(reply.metadata.messageId).not.toBe('m-1');
    expect(reply.isExpired(60_999)).toBe(false);
    expect(reply.isExpired(61_000)).toBe(true);
    const err = msg.createErrorReply({ code: 'X', reason: 'why' });
    expect(err.hasError()).toBe(true);
    expect(err.error).toEqual({ code: 'X', reason: 'why' });
    expectCode(() => err.contentOrThrow, 'MESSAGE_INVALID', /carries an error: X/);
    vi.setSystemTime(100_000);
    expect(msg.createReply(content()).metadata.ttlSeconds).toBe(0);
  });

  it('refuses invalid metadata and content', () => {
    expectCode(
      () => new Message({ metadata: metadata({ messageType: 'fit' as never }), content: content() }),
      'MESSAGE_INVALID',
      /messageType/,
    );
    expectCode(
      () => new Message({ metadata: metadata({ ttlSeconds: -1 }), content: content() }),
      'MESSAGE_INVALID',
      /ttlSeconds/,
    );
    expectCode(
      () => new Message({ metadata: metadata({ ttlSeconds: Number.NaN }), content: content() }),
      'MESSAGE_INVALID',
      /ttlSeconds/,
    );
    expectCode(
      () => new Message({ metadata: metadata({ createdAt: -5 }), content: content() }),
      'MESSAGE_INVALID',
      /createdAt/,
    );
    expectCode(
      () => new Message({ metadata: metadata({ messageId: '' }), content: content() }),
      'MESSAGE_INVALID',
      /messageId/,
    );
    expectCode(
      () => new Message({ metadata: metadata({ dstNodeId: '' }), content: content() }),
      'MESSAGE_INVALID',
      /dstNodeId/,
    );
    expectCode(
      () => new Message({ metadata: metadata({ runId: 7 as never }), content: content() }),
      'MESSAGE_INVALID',
      /runId/,
    );
    expectCode(
      () => new Message({ metadata: metadata({ groupId: 'g'.repeat(257) }), content: content() }),
      'MESSAGE_INVALID',
      /groupId/,
    );
    expectCode(
      () => new Message({ metadata: metadata() } as never),
      'MESSAGE_INVALID',
      /either content or an error/,
    );
    expectCode(
      () =>
        new Message({ metadata: metadata(), content: content(), error: { code: 'X', reason: '' } } as never),
      'MESSAGE_INVALID',
      /either content or an error/,
    );
    expectCode(
      () => new Message({ metadata: metadata(), content: { a: 1 } as never }),
      'MESSAGE_INVALID',
      /RecordDict/,
    );
    expectCode(
      () => new Message({ metadata: metadata(), error: { code: '', reason: 'x' } }),
      'MESSAGE_INVALID',
      /code and a reason/,
    );
  });

  it('withMetadata returns a new validated message', () => {
    const msg = new Message({ metadata: metadata({ runId: '' }), content: content() });
    const stamped = msg.withMetadata({ runId: 'run-9' });
    expect(stamped.metadata.runId).toBe('run-9');
    expect(msg.metadata.runId).toBe('');
    expect(stamped.content).toBe(msg.content);
    expectCode(() => msg.withMetadata({ messageType: 'bad' as never }), 'MESSAGE_INVALID');
  });
});

describe('Context', () => {
  it('validates and freezes configs and gives a fresh state', () => {
    const ctx = createContext({
      runId: 'r',
      nodeId: 'n',
      nodeConfig: { 'data-path': '/d', partition: 2 },
      runConfig: { rounds: 3, iid: true },
    });
    expect(ctx.nodeConfig).toEqual({ 'data-path': '/d', partition: 2 });
    expect(ctx.runConfig).toEqual({ rounds: 3, iid: true });
    expect(Object.isFrozen(ctx.runConfig)).toBe(true);
    expect(ctx.state.size).toBe(0);
    expectCode(
      () => createContext({ runId: 'r', nodeId: 'n', runConfig: { x: Number.NaN } }),
      'RECORD_INVALID',
      /finite/,
    );
    expectCode(
      () => createContext({ runId: 'r', nodeId: 'n', nodeConfig: { x: {} as never } }),
      'RECORD_INVALID',
    );
    expectCode(() => createContext({ runId: 'r', nodeId: 'n', runConfig: { '': 1 } }), 'RECORD_INVALID');
    expectCode(() => createContext({ runId: 1 as never, nodeId: 'n' }), 'RECORD_INVALID', /strings/);
  });
});
