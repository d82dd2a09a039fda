import { describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import {
  ArrayRecord,
  ClientApp,
  ConfigRecord,
  type Context,
  createContext,
  type Grid,
  InMemoryGrid,
  Message,
  MetricRecord,
  RecordDict,
  ReplyErrorCode,
  SERVER_NODE_ID,
  ServerApp,
} from './index.js';

/** A toy local training: w ← w + lr · (local mean − w), reporting the number of examples. */
function makeClient(localData: number[]): ClientApp {
  return new ClientApp()
    .train((msg, ctx) => {
      const w = msg.content.getArrayRecord('model')!.get('w', 'float32')!.data;
      const lr = msg.content.getConfigRecord('config')!.get('lr') as number;
      const mean = localData.reduce((a, b) => a + b, 0) / localData.length;
      const updated = Float32Array.from(w, (v) => v + lr * (mean - v));
      // Handlers may modify what they receive: the grid copies content between apps.
      w.fill(-1);
      const rounds = (ctx.state.getMetricRecord('state')?.get('rounds') as number | undefined) ?? 0;
      ctx.state.set('state', new MetricRecord({ rounds: rounds + 1 }));
      return new RecordDict({
        model: ArrayRecord.fromArrays({ w: updated }),
        metrics: new MetricRecord({ 'num-examples': localData.length, loss: Math.abs(mean - w[0]!) }),
      });
    })
    .evaluate((msg) => msg.createReply(new RecordDict({ metrics: new MetricRecord({ accuracy: 1 }) })));
}

const context = (nodeId = 'n1', runId = 'run-1'): Context => createContext({ runId, nodeId });

function trainMessage(dstNodeId = 'n1', runId = 'run-1'): Message {
  return Message.create({
    runId,
    dstNodeId,
    messageType: 'train',
    groupId: 'round-1',
    content: new RecordDict({
      model: ArrayRecord.fromArrays({ w: Float32Array.from([0, 0]) }),
      config: new ConfigRecord({ lr: 1 }),
    }),
  });
}

describe('ClientApp', () => {
  it('dispatches by message type and wraps a RecordDict into a reply', async () => {
    const app = makeClient([2, 4]);
    expect(app.messageTypes).toEqual(['train', 'evaluate']);
    const msg = trainMessage();
    const reply = await app.handle(msg, context());
    expect(reply.hasError()).toBe(false);
    expect(reply.metadata.replyToMessageId).toBe(msg.metadata.messageId);
    expect(reply.metadata.dstNodeId).toBe(SERVER_NODE_ID);
    expect([...reply.contentOrThrow.getArrayRecord('model')!.get('w', 'float32')!.data]).toEqual([3, 3]);
    const evalMsg = Message.create({
      runId: 'run-1',
      dstNodeId: 'n1',
      messageType: 'evaluate',
      content: new RecordDict(),
    });
    const evalReply = await app.handle(evalMsg, context());
    expect(evalReply.contentOrThrow.getMetricRecord('metrics')?.get('accuracy')).toBe(1);
  });

  it('turns failures into error replies instead of throwing', async () => {
    const app = new ClientApp({
      train: () => {
        throw new TypeError('bad tensor');
      },
      evaluate: () => {
        throw new PollenError('RECORD_INVALID', 'no model');
      },
      query: (msg) => Message.create({ dstNodeId: 'elsewhere', messageType: 'query', content: msg.content }),
    });
    const send = (type: 'train' | 'evaluate' | 'query') =>
      app.handle(
        Message.create({ runId: 'run-1', dstNodeId: 'n1', messageType: type, content: new RecordDict() }),
        context(),
      );
    expect((await send('train')).error).toEqual({
      code: ReplyErrorCode.CLIENT_APP_RAISED_EXCEPTION,
      reason: 'TypeError: bad tensor',
    });
    expect((await send('evaluate')).error?.reason).toBe('RECORD_INVALID: no model');
    expect((await send('query')).error?.code).toBe(ReplyErrorCode.MESSAGE_INVALID);

    const quiet = new ClientApp({ errorDetail: 'none' }).train(() => {
      throw new Error('patient 1234 has no label');
    });
    const r = await quiet.handle(trainMessage(), context());
    expect(r.error?.reason).toBe('The ClientApp raised an exception');
    expect(r.error?.reason).not.toContain('1234');
  });

  it('refuses messages for another node or run, expired, without content or without a handler', async () => {
    const app = new ClientApp().train(() => new RecordDict());
    expect((await app.handle(trainMessage('n2'), context())).error?.code).toBe(
      ReplyErrorCode.MESSAGE_INVALID,
    );
    expect((await app.handle(trainMessage('n1', 'run-2'), context())).error?.code).toBe(
      ReplyErrorCode.MESSAGE_INVALID,
    );
    const expired = trainMessage().withMetadata({ createdAt: Date.now() - 10_000, ttlSeconds: 5 });
    expect((await app.handle(expired, context())).error?.code).toBe(ReplyErrorCode.MESSAGE_EXPIRED);
    const errMsg = trainMessage()
      .createErrorReply({ code: 'X', reason: 'y' })
      .withMetadata({ dstNodeId: 'n1' });
    expect((await app.handle(errMsg, context())).error?.code).toBe(ReplyErrorCode.MESSAGE_INVALID);
    const q = Message.create({
      runId: 'run-1',
      dstNodeId: 'n1',
      messageType: 'query',
      content: new RecordDict(),
    });
    expect((await app.handle(q, context())).error?.code).toBe(ReplyErrorCode.UNSUPPORTED_MESSAGE_TYPE);
  });

  it('refuses a second handler for one type', () => {
    const app = new ClientApp().train(() => new RecordDict());
    expect(() => app.train(() => new RecordDict())).toThrow(/already registered/);
    expect(() => new ClientApp().query(42 as never)).toThrow(/must be a function/);
  });
});

describe('ServerApp with InMemoryGrid', () => {
  it('drives two ClientApps through one FedAvg-style train round', async () => {
    const clients = { 'site-a': makeClient([1, 1, 1]), 'site-b': makeClient([5]) };
    const grid = new InMemoryGrid({ runId: 'run-7', nodes: clients, runConfig: { rounds: 1 } });
    const initial = Float32Array.from([0, 0, 0]);
    let global = initial;
    const metrics: Record<string, number>[] = [];

    const server = new ServerApp().main(async (g: Grid, ctx: Context) => {
      expect(ctx.runConfig['rounds']).toBe(1);
      const nodes = await g.nodeIds();
      expect(nodes).toEqual(['site-a', 'site-b']);
      for (let round = 1; round <= (ctx.runConfig['rounds'] as number); round++) {
        const messages = nodes.map((dstNodeId) =>
          Message.create({
            dstNodeId,
            messageType: 'train',
            groupId: `round-${round}`,
            content: new RecordDict({
              model: ArrayRecord.fromArrays({ w: global }),
              config: new ConfigRecord({ lr: 0.5 }),
            }),
          }),
        );
        const replies = await g.sendAndReceive(messages, { timeoutMs: 5_000 });
        expect(replies).toHaveLength(2);
        let total = 0;
        const sum = new Float32Array(global.length);
        for (const reply of replies) {
          expect(reply.metadata.runId).toBe('run-7');
          expect(reply.metadata.groupId).toBe(`round-${round}`);
          const content = reply.contentOrThrow;
          const n = content.getMetricRecord('metrics')!.get('num-examples') as number;
          const w = content.getArrayRecord('model')!.get('w', 'float32')!.data;
          for (let i = 0; i < w.length; i++) sum[i]! += n * w[i]!;
          total += n;
          metrics.push(content.getMetricRecord('metrics')!.toObject() as Record<string, number>);
        }
        global = sum.map((v) => v / total);
      }
    });
    await server.run(
      grid,
      createContext({ runId: 'run-7', nodeId: SERVER_NODE_ID, runConfig: { rounds: 1 } }),
    );

    // site-a: 0 + 0.5·(1 − 0) = 0.5 with 3 examples; site-b: 0.5·5 = 2.5 with 1 → (1.5 + 2.5) / 4 = 1.
    expect([...global]).toEqual([1, 1, 1]);
    expect(metrics.map((m) => m['num-examples']).sort()).toEqual([1, 3]);
    // Each node kept its own state; the server's model was not touched by the handler's fill(-1).
    expect([...initial]).toEqual([0, 0, 0]);
    expect(grid.nodeContext('site-a')!.state.getMetricRecord('state')!.get('rounds')).toBe(1);
    expect(grid.nodeContext('site-b')!.state.getMetricRecord('state')!.get('rounds')).toBe(1);
  });

  it('returns the replies that arrive before the timeout; late ones can be pulled', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow = new ClientApp().train(async () => {
      await gate;
      return new RecordDict();
    });
    const fast = new ClientApp().train(() => new RecordDict());
    const grid = new InMemoryGrid({
      runId: 'r',
      nodes: { fast, slow: { app: slow, nodeConfig: { part: 1 } } },
    });
    expect(grid.nodeContext('slow')!.nodeConfig).toEqual({ part: 1 });
    const msgs = ['fast', 'slow'].map((dstNodeId) =>
      Message.create({ dstNodeId, messageType: 'train', content: new RecordDict() }),
    );
    const t0 = Date.now();
    const replies = await grid.sendAndReceive(msgs, { timeoutMs: 50 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    expect(replies.map((r) => r.metadata.srcNodeId)).toEqual(['fast']);
    release();
    await new Promise((r) => setTimeout(r, 10));
    const late = await grid.pull(msgs.map((m) => m.metadata.messageId));
    expect(late.map((r) => r.metadata.srcNodeId)).toEqual(['slow']);
    // Each reply is handed out once.
    expect(await grid.pull(msgs.map((m) => m.metadata.messageId))).toEqual([]);
  });

  it('carries error replies back to the server', async () => {
    const grid = new InMemoryGrid({
      runId: 'r',
      nodes: {
        ok: new ClientApp().train(() => new RecordDict()),
        broken: new ClientApp().train(() => {
          throw new Error('out of memory');
        }),
      },
    });
    const replies = await grid.sendAndReceive(
      ['ok', 'broken'].map((dstNodeId) =>
        Message.create({ dstNodeId, messageType: 'train', content: new RecordDict() }),
      ),
    );
    const bySrc = Object.fromEntries(replies.map((r) => [r.metadata.srcNodeId, r]));
    expect(bySrc['ok']!.hasContent()).toBe(true);
    expect(bySrc['broken']!.error).toEqual({
      code: 'CLIENT_APP_RAISED_EXCEPTION',
      reason: 'Error: out of memory',
    });
  });

  it('refuses bad sends as a whole batch', async () => {
    const grid = new InMemoryGrid({
      runId: 'r',
      nodes: { a: new ClientApp().train(() => new RecordDict()) },
    });
    const good = Message.create({ dstNodeId: 'a', messageType: 'train', content: new RecordDict() });
    const unknown = Message.create({ dstNodeId: 'zz', messageType: 'train', content: new RecordDict() });
    await expect(grid.send([good, unknown])).rejects.toThrow(/no node zz/);
    await expect(
      grid.send([
        Message.create({ runId: 'other', dstNodeId: 'a', messageType: 'train', content: new RecordDict() }),
      ]),
    ).rejects.toThrow(/belongs to run other/);
    const reply = good.withMetadata({ runId: 'r' }).createReply(new RecordDict());
    await expect(grid.send([reply.withMetadata({ dstNodeId: 'a' })])).rejects.toThrow(
      /a reply cannot be sent/,
    );
    await expect(grid.send([good.createErrorReply({ code: 'x', reason: 'y' })])).rejects.toThrow(
      /carry content/,
    );
    await expect(grid.send([good, good])).rejects.toThrow(/already sent/);
    // Nothing from the refused batches was delivered; the good message can still go once.
    const [id] = await grid.send([good]);
    expect(id).toBe(good.metadata.messageId);
    await expect(grid.send([good])).rejects.toThrow(/already sent/);
    await expect(grid.send([{} as never])).rejects.toThrow(/Message objects/);
    expect(() => new InMemoryGrid({ runId: 'r', nodes: { [SERVER_NODE_ID]: new ClientApp() } })).toThrow(
      /server/,
    );
  });

  it('needs a main before it runs', async () => {
    const grid = new InMemoryGrid({ runId: 'r', nodes: {} });
    await expect(new ServerApp().run(grid, context())).rejects.toThrow(/Register a main/);
    expect(() => new ServerApp(() => {}).main(() => {})).toThrow(/already registered/);
  });
});
