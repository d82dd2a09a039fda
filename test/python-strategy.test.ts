/**
 * The Python FedAvg gives the TypeScript FedAvg's result on the same inputs, bit for bit: both
 * sum in float64 in the same order and round to float32 at the same points (aggregate.ts,
 * sdk/python/pollen/strategy/aggregate.py). Cases cover 1-9 replies (every remainder of the
 * four-at-a-time kernel), small and large float32 layers, float64 layers, odd weights, metrics.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArrayRecord, Message, MetricRecord, RecordDict } from '../src/sdk/index.js';
import { decodeNpz, encodeNpz } from '../src/sdk/npz.js';
import { FedAvg, seededRng } from '../src/strategies/index.js';
import { PYTHON } from './support/python.js';

const SDK = join(import.meta.dirname, '..', 'sdk', 'python');
const COUNTS = [1, 2, 3, 4, 5, 6, 7, 9];

// Reads case folders (reply-K.npz + weights.json), writes out.npz and metrics.json beside them.
const SCRIPT = `
import json, sys, os
import numpy as np
from pollen import ArrayRecord, FedAvg, Message, MetricRecord, RecordDict
for folder in sys.argv[1:]:
    spec = json.load(open(os.path.join(folder, "replies.json")))
    instruction = Message(RecordDict(), dst_node_id="1", message_type="train")
    replies = []
    for k, r in enumerate(spec):
        arrays = np.load(os.path.join(folder, f"reply-{k}.npz"))
        content = RecordDict({
            "arrays": ArrayRecord({name: arrays[name] for name in r["names"]}),
            "metrics": MetricRecord(r["metrics"]),
        })
        replies.append(Message(content, reply_to=instruction.with_metadata(dst_node_id=str(k + 1))))
    arrays, metrics = FedAvg().aggregate_train(1, replies)
    np.savez(os.path.join(folder, "out.npz"), **{n: a.numpy() for n, a in arrays.items()})
    json.dump(dict(metrics), open(os.path.join(folder, "metrics.json"), "w"))
`;

function randomArrays(rng: () => number): ArrayRecord {
  const f32 = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rng() - 0.5) * scale);
  return ArrayRecord.fromArrays({
    big: { data: f32(70_001, 3), shape: [70_001] },
    small: { data: f32(1000, 1e-3), shape: [10, 100] },
    wide: f32(300, 1e6),
    d: Float64Array.from({ length: 50 }, () => (rng() - 0.5) * 7),
  });
}

describe('Python FedAvg and TypeScript FedAvg', () => {
  it('aggregate the same replies to the same bytes and metrics', { timeout: 120_000 }, () => {
    const rng = seededRng(2026);
    const root = mkdtempSync(join(tmpdir(), 'pollen-parity-'));
    const cases = COUNTS.map((count) => {
      const folder = join(root, `k${count}`);
      mkdirSync(folder);
      const replies: Message[] = [];
      const spec: unknown[] = [];
      for (let k = 0; k < count; k++) {
        const arrays = randomArrays(rng);
        // Integer and fractional weights, very unequal ones too.
        const weight = k % 3 === 0 ? 1 + Math.floor(rng() * 1000) : rng() * 50 + 0.001;
        const metrics = { 'num-examples': weight, loss: rng() * 4, acc: [rng(), rng()] };
        writeFileSync(join(folder, `reply-${k}.npz`), Buffer.concat(encodeNpz(arrays)));
        spec.push({ names: [...arrays.keys()], metrics });
        const instruction = Message.create({
          dstNodeId: String(k + 1),
          messageType: 'train',
          content: new RecordDict(),
        });
        replies.push(instruction.createReply(new RecordDict({ arrays, metrics: new MetricRecord(metrics) })));
      }
      writeFileSync(join(folder, 'replies.json'), JSON.stringify(spec));
      return { folder, expected: new FedAvg().aggregateTrain(1, replies) };
    });
    execFileSync(PYTHON, ['-c', SCRIPT, ...cases.map((c) => c.folder)], {
      env: { ...process.env, PYTHONPATH: SDK, PYTHONDONTWRITEBYTECODE: '1' },
    });
    for (const { folder, expected } of cases) {
      const got = decodeNpz(readFileSync(join(folder, 'out.npz')));
      expect([...got.keys()]).toEqual([...expected.arrays.keys()]);
      for (const [name, e] of expected.arrays) {
        const g = got.get(name)!;
        expect([g.dtype, g.shape], `${folder} ${name}`).toEqual([e.dtype, e.shape]);
        // Bit for bit: compare the bytes, not the values with a tolerance.
        expect(
          Buffer.from(g.data.buffer).equals(Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength)),
          `${folder} ${name}`,
        ).toBe(true);
      }
      expect(JSON.parse(readFileSync(join(folder, 'metrics.json'), 'utf8'))).toEqual(
        expected.metrics.toObject(),
      );
    }
  });
});
