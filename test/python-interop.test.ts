/**
 * A Python ClientApp under the SuperNode's ClientAppIo, as the SuperNode starts it: instructions
 * made by the TypeScript SDK, replies read by it. Arrays of every dtype and odd shape come back
 * bit-exact both ways, a handler that raises gives a precise error reply and the app keeps
 * serving, and a 128 MiB model passes through with the app's peak memory measured and bounded.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Message } from '../src/sdk/message.js';
import { ArrayRecord, ConfigRecord, MetricRecord, RecordDict } from '../src/sdk/records.js';
import {
  type AppProcess,
  type ClientAppIoHarness,
  NODE_ID,
  peakRss,
  startClientAppIo,
} from './support/clientappio.js';
import { everyDType, expectSameArrays } from './support/dtypes.js';

const MiB = 1024 * 1024;

/** Echoes every array (and checks what Python sees), raises on request, updates a model in place. */
const APP = `
import numpy as np
from pollen import ClientApp, Message, RecordDict, ArrayRecord, MetricRecord, ConfigRecord

app = ClientApp()

@app.query()
def query(msg, context):
    arrays = msg.content["arrays"]
    seen = ConfigRecord({name: f"{a.numpy().dtype.name}{list(a.numpy().shape)}" for name, a in arrays.items()})
    return Message(RecordDict({**msg.content, "seen": seen}), reply_to=msg)

@app.train()
def train(msg, context):
    if context.run_config.get("raise-on") == msg.metadata.group_id:
        raise RuntimeError(f"no data for {msg.metadata.group_id}")
    arrays = msg.content["arrays"]
    for a in arrays.values():
        a.numpy()[...] += 1  # in place, as an optimizer step does
    return RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 3})})
`;

let io: ClientAppIoHarness;
let app: AppProcess;
const dir = mkdtempSync(join(tmpdir(), 'pollen-pyinterop-'));

beforeAll(async () => {
  writeFileSync(join(dir, 'site_app.py'), APP);
  io = await startClientAppIo({ runConfig: { 'raise-on': 'round-2' }, nodeConfig: { 'data-path': '/data' } });
  app = io.startApp({ dir, python: 'site_app:app' });
});
afterAll(async () => {
  await io?.close();
  rmSync(dir, { recursive: true, force: true });
});

const instruction = (
  messageType: 'train' | 'query',
  arrays: ArrayRecord,
  groupId = 'round-1',
  more: Record<string, ConfigRecord | MetricRecord> = {},
): Message =>
  Message.create({ dstNodeId: NODE_ID, messageType, groupId, content: new RecordDict({ arrays, ...more }) });

describe('a Python ClientApp under the SuperNode', () => {
  it('gets every dtype and odd shape bit-exact and sends them back bit-exact', async () => {
    const arrays = everyDType();
    // And one large enough to travel as chunks, with a last piece shorter than the others.
    arrays.set('large', {
      dtype: 'float64',
      shape: [3, MiB / 8 + 1],
      data: Float64Array.from({ length: 3 * (MiB / 8 + 1) }, (_, i) => i / 7),
    });
    const config = new ConfigRecord({
      lr: 0.01,
      epochs: 3,
      name: 'sgd',
      on: true,
      blob: Uint8Array.from([0, 255]),
      xs: [0.5, 2],
      names: ['a', 'b'],
      flags: [true, false],
      blobs: [Uint8Array.from([1])],
      none: [],
    });
    const metrics = new MetricRecord({ 'num-examples': 600, loss: 0.25, 'per-class': [0.5, 1] });
    const sent = io.send(instruction('query', arrays, 'round-1', { config, metrics }));
    const reply = await io.reply();
    expect(reply.error).toBeUndefined();
    expect(reply.metadata).toMatchObject({
      replyToMessageId: sent.metadata!.messageId,
      srcNodeId: NODE_ID,
      dstNodeId: '0',
      messageType: 'query',
    });
    expectSameArrays(reply.content!.getArrayRecord('arrays')!, arrays);
    expect(reply.content!.getConfigRecord('config')!.toObject()).toEqual(config.toObject());
    expect(reply.content!.getMetricRecord('metrics')!.toObject()).toEqual(metrics.toObject());
    const seen = reply.content!.getConfigRecord('seen')!;
    expect(seen.get('float16/matrix')).toBe('float16[2, 4]');
    expect(seen.get('bool/scalar')).toBe('bool[]');
    expect(seen.get('uint64/empty')).toBe('uint64[3, 0]');
    expect(seen.get('large')).toBe('float64[3, 131073]');
  });

  it('answers a handler that raises with a precise error and keeps serving', async () => {
    const w = () => ArrayRecord.fromArrays({ w: Float32Array.from([1, 2]) });
    io.send(instruction('train', w(), 'round-2'));
    const failed = await io.reply();
    expect(failed.error).toEqual({
      code: 'CLIENT_APP_RAISED_EXCEPTION',
      reason: 'RuntimeError: no data for round-2',
    });
    expect(app.lines.join('\n')).toContain('Traceback (most recent call last)');
    io.send(instruction('train', w(), 'round-3'));
    const ok = await io.reply();
    expect([...ok.content!.getArrayRecord('arrays')!.get('w', 'float32')!.data]).toEqual([2, 3]);
    expect(ok.content!.getMetricRecord('metrics')!.get('num-examples')).toBe(3);
    io.send(instruction('query', w()).withMetadata({ messageType: 'evaluate' }));
    expect((await io.reply()).error?.code).toBe('UNSUPPORTED_MESSAGE_TYPE');
  });

  it('trains a 128 MiB model with at most 3x its size in peak memory', async () => {
    const n = (128 * MiB) / 4;
    const model = new Float32Array(n);
    for (let i = 0; i < n; i += 4096) model[i] = i % 1000;
    io.send(instruction('train', ArrayRecord.fromArrays({ w: model })));
    const reply = await io.reply(120_000);
    const w = reply.content!.getArrayRecord('arrays')!.get('w', 'float32')!.data;
    expect(w.length).toBe(n);
    for (let i = 0; i < n; i += 4096 * 97) expect(w[i]).toBe((i % 1000) + 1);
    expect(w[1]).toBe(1);
    const peak = peakRss(app.child.pid!);
    expect(peak, `peak RSS ${(peak / MiB).toFixed(0)} MiB`).toBeLessThanOrEqual(3 * 128 * MiB);
  });

  it('ends when the run ends', async () => {
    io.end();
    expect(await app.exited).toBe(0);
  });
});

describe('a Python app that cannot be loaded', () => {
  it('refuses each instruction with the code and the hint, without fetching its arrays', async () => {
    const bad = mkdtempSync(join(tmpdir(), 'pollen-pyinterop-bad-'));
    writeFileSync(join(bad, 'broken.py'), 'import torchvision_not_here\n');
    const other = await startClientAppIo();
    try {
      const proc = other.startApp({ dir: bad, python: 'broken:app' });
      other.send(instruction('train', ArrayRecord.fromArrays({ w: new Float32Array(MiB) })));
      const reply = await other.reply();
      expect(reply.error?.code).toBe('APP_LOAD_FAILED');
      expect(reply.error?.reason).toContain("No module named 'torchvision_not_here'");
      expect(reply.error?.reason).toContain("installed in the site's Python environment");
      other.end();
      expect(await proc.exited).toBe(0);
    } finally {
      await other.close();
      rmSync(bad, { recursive: true, force: true });
    }
  });
});
