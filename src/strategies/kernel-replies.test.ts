/**
 * Strategy.start with a grid that decodes replies from the wire as a ServerApp's does
 * (apps/remote-grid.ts): training replies come into the kernel's memory where the aggregation is
 * Pollen's own, are read there in place, and are freed once aggregated, so the memory holds one
 * round's replies however many rounds run.
 */
import { describe, expect, it } from 'vitest';
import {
  ArrayRecord,
  ClientApp,
  type Grid,
  InMemoryGrid,
  type Message,
  MetricRecord,
  RecordDict,
  type SendAndReceiveOptions,
} from '../sdk/index.js';
import { messageFromWire, messageToWire } from '../transport/wire.js';
import { FedAvg } from './fedavg.js';
import { FedAvgM } from './fedavgm.js';
import { FedMedian } from './fedmedian.js';
import { inKernelMemory, kernelMemory } from './kernel-memory.js';
import { Krum } from './krum.js';
import type { TrainAggregate } from './strategy.js';

const P = 400_000; // 1.6 MB a reply: over the wire decoder's 1 MiB threshold

/** An InMemoryGrid whose replies go through messageToWire / messageFromWire, as over a network. */
class WireGrid implements Grid {
  readonly asked: { type: string; kernelMemory: boolean }[] = [];
  /** Every training reply array received into the kernel's memory. */
  readonly inKernel: Float32Array[] = [];
  readonly #inner: InMemoryGrid;

  constructor(nodes: Record<string, ClientApp>) {
    this.#inner = new InMemoryGrid({ runId: 'run', nodes });
  }
  get runId(): string {
    return this.#inner.runId;
  }
  nodeIds(): Promise<string[]> {
    return this.#inner.nodeIds();
  }
  send(messages: Iterable<Message>): Promise<string[]> {
    return this.#inner.send(messages);
  }
  pull(ids: Iterable<string>): Promise<Message[]> {
    return this.#inner.pull(ids);
  }
  async sendAndReceive(messages: Iterable<Message>, options: SendAndReceiveOptions = {}): Promise<Message[]> {
    const batch = [...messages];
    const kernel = options.kernelMemory === true;
    this.asked.push({ type: batch[0]?.metadata.messageType ?? '', kernelMemory: kernel });
    const replies = await this.#inner.sendAndReceive(batch, { timeoutMs: options.timeoutMs });
    return Promise.all(
      replies.map(async (reply) => {
        const { wire, chunks } = messageToWire(reply);
        const back = await messageFromWire(wire, (id) => chunks.get(id), { kernelMemory: kernel });
        for (const record of back.content?.arrayRecords.values() ?? [])
          for (const [, { data }] of record)
            if (data instanceof Float32Array && inKernelMemory(data)) this.inKernel.push(data);
        return back;
      }),
    );
  }
}

/** Node `id` trains by adding `id` (and, for `poisoned`, × 1000) to every value. */
function node(id: number, poisoned = false): ClientApp {
  return new ClientApp({
    train(message) {
      const w = message.content.getArrayRecord('arrays')!.get('w', 'float32')!.data;
      const data = w.map((x, i) => (poisoned ? 1000 : 1) * (x + id + (i % 7) / 8));
      return new RecordDict({
        arrays: ArrayRecord.fromArrays({ w: data }),
        metrics: new MetricRecord({ 'num-examples': 10 * id }),
      });
    },
  });
}

const nodes = (n: number, poisoned = -1) =>
  Object.fromEntries(Array.from({ length: n }, (_, k) => [`n${k + 1}`, node(k + 1, k === poisoned)]));
const initialArrays = () => ArrayRecord.fromArrays({ w: new Float32Array(P) });
const quiet = () => {};

async function run(strategy: FedAvg, grid: Grid, numRounds: number) {
  const sizes: number[] = [];
  const result = await strategy.start({
    grid,
    initialArrays: initialArrays(),
    numRounds,
    log: quiet,
    onRound: () => {
      sizes.push(kernelMemory()?.size ?? 0);
    },
  });
  return { result, sizes, w: result.arrays.get('w', 'float32')!.data };
}

describe("Strategy.start over a grid that decodes replies: Pollen's aggregation reads them in place", () => {
  it('asks for training replies in the kernel memory, gives the bits of ordinary memory, and frees them every round', async () => {
    for (const make of [
      () => new FedAvg(),
      () => new FedAvgM({ serverMomentum: 0.9 }),
      () => new FedMedian(),
    ]) {
      const grid = new WireGrid(nodes(4));
      const inPlace = await run(make(), grid, 6);
      const plain = await run(make(), new InMemoryGrid({ runId: 'run', nodes: nodes(4) }), 6);
      expect(grid.asked.filter((a) => a.type === 'train').every((a) => a.kernelMemory)).toBe(true);
      expect(grid.asked.filter((a) => a.type === 'evaluate').some((a) => a.kernelMemory)).toBe(false);
      expect(grid.inKernel).toHaveLength(4 * 6);
      // The same model, bit for bit, and not itself in the kernel memory (it outlives the round).
      expect(Buffer.from(inPlace.w.buffer).equals(Buffer.from(plain.w.buffer))).toBe(true);
      expect(inKernelMemory(inPlace.w)).toBe(false);
      // Each round's replies reuse the blocks of the round before: the memory stops growing.
      expect(new Set(inPlace.sizes.slice(1)).size).toBe(1);
      const offsets = grid.inKernel.map((a) => a.byteOffset);
      expect(new Set(offsets).size).toBe(4);
    }
  });

  it('frees the replies of a round whose aggregation fails, and of one that keeps the model (too few replies)', async () => {
    // Krum with 1 malicious node needs 2·1 + 3 = 5 replies; 4 come: the model stays as it was.
    const grid = new WireGrid(nodes(4));
    const kept = await run(new Krum({ numMaliciousNodes: 1 }), grid, 3);
    expect(grid.inKernel).toHaveLength(12);
    expect(new Set(grid.inKernel.map((a) => a.byteOffset)).size).toBe(4);
    expect(kept.w.every((x) => x === 0)).toBe(true);
    // An error thrown by the aggregation (a reply of another shape) ends the run; its replies are freed.
    const odd = new ClientApp({
      train: () =>
        new RecordDict({
          arrays: ArrayRecord.fromArrays({ w: new Float32Array(P + 8) }),
          metrics: new MetricRecord({ 'num-examples': 1 }),
        }),
    });
    const broken = new WireGrid({ ...nodes(3), odd });
    const used = () => (kernelMemory()?.size ?? 0) - (kernelMemory()?.freeBytes() ?? 0);
    const before = used();
    await expect(run(new FedAvg(), broken, 2)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(broken.inKernel).toHaveLength(4);
    expect(used()).toBe(before);
  });

  it('gives a strategy whose aggregateTrain is the app’s own ordinary arrays, which it may keep', async () => {
    class KeepsReplies extends FedAvg {
      kept: Float32Array[] = [];
      override aggregateTrain(serverRound: number, replies: Iterable<Message>): TrainAggregate {
        const list = [...replies];
        for (const r of list) this.kept.push(r.content!.getArrayRecord('arrays')!.get('w', 'float32')!.data);
        return super.aggregateTrain(serverRound, list);
      }
    }
    const grid = new WireGrid(nodes(3));
    const strategy = new KeepsReplies();
    await run(strategy, grid, 3);
    expect(grid.asked.some((a) => a.kernelMemory)).toBe(false);
    expect(grid.inKernel).toHaveLength(0);
    // What it kept is intact: round r, node k sent r·k + Σ … (values never overwritten by later rounds).
    const firstRound = strategy.kept.slice(0, 3).map((a) => a[0]);
    expect(firstRound).toEqual([1, 2, 3]);
  });

  it('with a poisoned node, FedMedian in place matches FedMedian over ordinary memory', async () => {
    const inPlace = await run(new FedMedian(), new WireGrid(nodes(5, 2)), 3);
    const plain = await run(new FedMedian(), new InMemoryGrid({ runId: 'run', nodes: nodes(5, 2) }), 3);
    expect(Buffer.from(inPlace.w.buffer).equals(Buffer.from(plain.w.buffer))).toBe(true);
  });
});
