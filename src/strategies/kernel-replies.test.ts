/**
 * Strategy.start with a grid that decodes replies from the wire as a ServerApp's does
 * (apps/remote-grid.ts): training replies come into the kernel's memory for Pollen's own strategies,
 * are read there in place, and are freed once aggregated, so the memory holds one round's replies
 * however many rounds run.
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
import { Bulyan } from './bulyan.js';
import { FedAdam } from './fedadam.js';
import { FedAvg } from './fedavg.js';
import { FedAvgM } from './fedavgm.js';
import { FedMedian } from './fedmedian.js';
import { FedTrimmedAvg } from './fedtrimmedavg.js';
import { inKernelMemory, KERNEL_MEMORY_GRID, kernelMemory } from './kernel-memory.js';
import { Krum } from './krum.js';
import { MultiKrum } from './multikrum.js';
import { QFedAvg } from './qfedavg.js';
import type { TrainAggregate } from './strategy.js';

const P = 400_000; // 1.6 MB a reply: over the wire decoder's 1 MiB threshold

/** An InMemoryGrid whose replies go through messageToWire / messageFromWire, as over a network. */
class WireGrid implements Grid {
  /** Whether it says it honours `kernelMemory` (a RemoteGrid does): only then does start() ask. */
  readonly [KERNEL_MEMORY_GRID]: boolean;
  readonly asked: { type: string; kernelMemory: boolean }[] = [];
  /** Every training reply array received into the kernel's memory. */
  readonly inKernel: Float32Array[] = [];
  readonly #inner: InMemoryGrid;

  constructor(nodes: Record<string, ClientApp>, honoursKernelMemory = true) {
    this.#inner = new InMemoryGrid({ runId: 'run', nodes });
    this[KERNEL_MEMORY_GRID] = honoursKernelMemory;
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
        metrics: new MetricRecord({ 'num-examples': 10 * id, train_loss: 1 / id }),
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

  it('gives a subclass, which may keep what it is given, ordinary arrays, and they stay intact', async () => {
    class KeepsReplies extends FedAvg {
      kept: Float32Array[] = [];
      override aggregateTrain(serverRound: number, replies: Iterable<Message>): TrainAggregate {
        const list = [...replies];
        for (const r of list) this.kept.push(r.content!.getArrayRecord('arrays')!.get('w', 'float32')!.data);
        return super.aggregateTrain(serverRound, list);
      }
    }
    // Overriding only a protected step that sees the replies' records counts the same.
    class KeepsRecords extends FedAvg {
      kept: Float32Array[] = [];
      protected override trainAggregate(...args: Parameters<FedAvg['trainAggregate']>): TrainAggregate {
        for (const record of args[0].arrays) this.kept.push(record.get('w', 'float32')!.data);
        return super.trainAggregate(...args);
      }
    }
    for (const strategy of [new KeepsReplies(), new KeepsRecords()]) {
      const grid = new WireGrid(nodes(3));
      await run(strategy, grid, 3);
      expect(grid.asked.some((a) => a.kernelMemory)).toBe(false);
      expect(grid.inKernel).toHaveLength(0);
      // The first round's replies as sent (node k adds k to zeros), not overwritten by later rounds.
      expect(strategy.kept.slice(0, 3).map((a) => a[0])).toEqual([1, 2, 3]);
    }
  });

  it('asks only a grid that says it honours kernelMemory (not a wrapper that may keep replies)', async () => {
    const grid = new WireGrid(nodes(3), false);
    const plain = await run(new FedAvg(), grid, 2);
    expect(grid.asked.some((a) => a.kernelMemory)).toBe(false);
    expect(grid.inKernel).toHaveLength(0);
    expect(plain.w[0]).toBeGreaterThan(0);
  });

  it('gives the bits of ordinary memory for the rest of the catalogue too', async () => {
    const makers = [
      () => new FedAdam(),
      () => new QFedAvg({ clientLearningRate: 0.1 }),
      () => new FedTrimmedAvg({ beta: 0.2 }),
      () => new MultiKrum({ numMaliciousNodes: 1, numNodesToSelect: 3 }),
      () => new Bulyan({ numMaliciousNodes: 1 }),
    ];
    for (const make of makers) {
      const grid = new WireGrid(nodes(7));
      const inPlace = await run(make(), grid, 2);
      const plain = await run(make(), new InMemoryGrid({ runId: 'run', nodes: nodes(7) }), 2);
      expect(grid.inKernel, make().constructor.name).toHaveLength(14);
      expect(
        inPlace.w.some((x) => x !== 0),
        make().constructor.name,
      ).toBe(true); // a model came out
      expect(Buffer.from(inPlace.w.buffer).equals(Buffer.from(plain.w.buffer)), make().constructor.name).toBe(
        true,
      );
    }
  });

  it('with a poisoned node, FedMedian in place matches FedMedian over ordinary memory', async () => {
    const inPlace = await run(new FedMedian(), new WireGrid(nodes(5, 2)), 3);
    const plain = await run(new FedMedian(), new InMemoryGrid({ runId: 'run', nodes: nodes(5, 2) }), 3);
    expect(Buffer.from(inPlace.w.buffer).equals(Buffer.from(plain.w.buffer))).toBe(true);
  });
});
