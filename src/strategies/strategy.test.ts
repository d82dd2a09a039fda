import { describe, expect, it } from 'vitest';
import { pollenErrorOf as rejection } from '../../test/support/errors.js';
import {
  ArrayRecord,
  ClientApp,
  ConfigRecord,
  type Grid,
  InMemoryGrid,
  type Message,
  MetricRecord,
  RecordDict,
  type RoundReport,
  type SendAndReceiveOptions,
} from '../sdk/index.js';
import { Bulyan } from './bulyan.js';
import { FedAvg } from './fedavg.js';
import { FedProx } from './fedprox.js';
import type { Clock, StartOptions } from './strategy.js';

/** An InMemoryGrid that keeps the round reports, and whose available nodes a test may limit. */
class TestGrid implements Grid {
  readonly reports: RoundReport[] = [];
  readonly #inner: InMemoryGrid;
  readonly #available: (() => string[]) | undefined;

  constructor(inner: InMemoryGrid, available?: () => string[]) {
    this.#inner = inner;
    this.#available = available;
  }

  get runId(): string {
    return this.#inner.runId;
  }

  nodeIds(): Promise<string[]> {
    return this.#available ? Promise.resolve(this.#available()) : this.#inner.nodeIds();
  }

  send(messages: Iterable<Message>): Promise<string[]> {
    return this.#inner.send(messages);
  }

  pull(ids: Iterable<string>): Promise<Message[]> {
    return this.#inner.pull(ids);
  }

  sendAndReceive(messages: Iterable<Message>, options?: SendAndReceiveOptions): Promise<Message[]> {
    return this.#inner.sendAndReceive(messages, options);
  }

  async reportRound(report: RoundReport): Promise<void> {
    this.reports.push(report);
  }
}

/** A clock whose sleep only moves its time on. */
function fakeClock(): Clock & { sleeps: number[] } {
  let now = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
  };
}

/**
 * Node `id` trains by adding `id` to every value and reports `examples` examples and a
 * train-loss of round · id; it evaluates with loss = id. It records the configs it was sent.
 */
function node(id: number, examples: number, seen: Record<string, unknown>[] = []): ClientApp {
  const add = (record: ArrayRecord): ArrayRecord => {
    const out = new ArrayRecord();
    for (const [name, e] of record) {
      const data = e.data.slice() as Float32Array | Float64Array;
      for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) + id;
      out.set(name, { dtype: e.dtype, shape: e.shape, data });
    }
    return out;
  };
  return new ClientApp({
    train(message) {
      const config = message.content.getConfigRecord('config')!;
      seen.push(config.toObject());
      const round = config.get('server-round') as number;
      return new RecordDict({
        arrays: add(message.content.getArrayRecord('arrays')!),
        metrics: new MetricRecord({ 'num-examples': examples, 'train-loss': round * id }),
      });
    },
    evaluate: () => new RecordDict({ metrics: new MetricRecord({ 'num-examples': examples, loss: id }) }),
  });
}

function failing(): ClientApp {
  return new ClientApp({
    train() {
      throw new Error('out of memory');
    },
  });
}

function gridOf(nodes: Record<string, ClientApp>, available?: () => string[]): TestGrid {
  return new TestGrid(new InMemoryGrid({ runId: 'run', nodes }), available);
}

const initialArrays = () => ArrayRecord.fromArrays({ w: new Float32Array(2) });
const values = (record: ArrayRecord) => Array.from(record.get('w')!.data as Float32Array);

describe('Strategy.start', () => {
  it('returns the weighted average of every round (hand-computed) and sends server-round and the config', async () => {
    const seen: Record<string, unknown>[] = [];
    const grid = gridOf({ '1': node(1, 10, seen), '2': node(2, 20, seen), '3': node(3, 70, seen) });
    const result = await new FedAvg().start({
      grid,
      initialArrays: initialArrays(),
      numRounds: 2,
      trainConfig: new ConfigRecord({ lr: 0.5 }),
    });
    // Each round adds 0.1 · 1 + 0.2 · 2 + 0.7 · 3 = 2.6 to every value.
    expect(values(result.arrays)).toEqual([Math.fround(5.2), Math.fround(5.2)]);
    expect(result.arrays.get('w')!.dtype).toBe('float32');
    expect(seen).toHaveLength(6);
    expect(seen.filter((c) => c['server-round'] === 1)).toHaveLength(3);
    expect(seen.filter((c) => c['server-round'] === 2)).toHaveLength(3);
    for (const c of seen) expect(c['lr']).toBe(0.5);
    expect(result.trainMetrics.get(2)?.toObject()).toEqual({ 'train-loss': 2 * 2.6 });
    expect(result.evaluateMetrics.get(1)?.get('loss')).toBeCloseTo(2.6, 12);
    expect(result.failures.get(1)).toEqual([]);
  });

  it('reports each round with the run: train nodes and the train, evaluate and central metrics', async () => {
    const grid = gridOf({ a: node(1, 1), b: node(3, 1) });
    const rounds: number[] = [];
    await new FedAvg().start({
      grid,
      initialArrays: initialArrays(),
      numRounds: 2,
      evaluateFn: (round) => new MetricRecord({ 'centralized-accuracy': round / 10 }),
      onRound: (r) => void rounds.push(r.serverRound),
    });
    expect(grid.reports.map((r) => ({ ...r, nodeIds: [...r.nodeIds].sort() }))).toEqual([
      { round: 1, metrics: { 'train-loss': 2, loss: 2, 'centralized-accuracy': 0.1 }, nodeIds: ['a', 'b'] },
      { round: 2, metrics: { 'train-loss': 4, loss: 2, 'centralized-accuracy': 0.2 }, nodeIds: ['a', 'b'] },
    ]);
    expect(rounds).toEqual([1, 2]);
  });

  it('calls evaluateFn with round 0 and after each round, on the current arrays', async () => {
    const calls: [number, number[]][] = [];
    const result = await new FedAvg({ minAvailableNodes: 1, minTrainNodes: 1, fractionEvaluate: 0 }).start({
      grid: gridOf({ '1': node(1, 5) }),
      initialArrays: initialArrays(),
      numRounds: 3,
      evaluateFn: (round, arrays) => {
        calls.push([round, values(arrays)]);
        return round === 2 ? undefined : new MetricRecord({ 'centralized-loss': round });
      },
    });
    expect(calls).toEqual([
      [0, [0, 0]],
      [1, [1, 1]],
      [2, [2, 2]],
      [3, [3, 3]],
    ]);
    expect([...result.serverEvaluateMetrics.keys()]).toEqual([0, 1, 3]);
    expect(result.evaluateMetrics.size).toBe(0); // fractionEvaluate 0: no evaluate messages
  });

  it('counts failed nodes per round, leaves them out of the average and logs them', async () => {
    const grid = gridOf({ '1': node(1, 1), '2': node(3, 1), '3': failing() });
    const lines: string[] = [];
    const result = await new FedAvg().start({
      grid,
      initialArrays: initialArrays(),
      numRounds: 1,
      log: (line) => void lines.push(line),
    });
    expect(values(result.arrays)).toEqual([2, 2]); // nodes 1 and 2 only
    expect(result.failures.get(1)).toEqual([
      {
        nodeId: '3',
        messageType: 'train',
        code: 'CLIENT_APP_RAISED_EXCEPTION',
        reason: 'Error: out of memory',
      },
      {
        nodeId: '3',
        messageType: 'evaluate',
        code: 'UNSUPPORTED_MESSAGE_TYPE',
        reason: 'This ClientApp has no evaluate handler',
      },
    ]);
    expect(grid.reports[0]?.metrics).toMatchObject({ 'train-failures': 1, 'evaluate-failures': 1 });
    // The round names the nodes whose model it averaged; the failed one is counted apart.
    expect([...(grid.reports[0]?.nodeIds ?? [])].sort()).toEqual(['1', '2']);
    expect(lines).toEqual([
      'node 3 train failed: Error: out of memory',
      'node 3 evaluate failed: This ClientApp has no evaluate handler',
    ]);
  });

  it('leaves a model holding NaN out of the average, counts it as a failure and names the node', async () => {
    const poisoned = new ClientApp({
      train: () =>
        new RecordDict({
          arrays: ArrayRecord.fromArrays({ w: new Float32Array([Number.NaN, 1]) }),
          metrics: new MetricRecord({ 'num-examples': 1 }),
        }),
    });
    const grid = gridOf({ '1': node(1, 1), '2': node(3, 1), '3': poisoned });
    const lines: string[] = [];
    const result = await new FedAvg({ fractionEvaluate: 0 }).start({
      grid,
      initialArrays: initialArrays(),
      numRounds: 1,
      log: (line) => void lines.push(line),
    });
    expect(values(result.arrays)).toEqual([2, 2]); // nodes 1 and 2 only
    expect(result.failures.get(1)).toEqual([
      {
        nodeId: '3',
        messageType: 'train',
        code: 'UPDATE_NOT_FINITE',
        reason: 'Array "w" holds NaN or Inf: the reply is left out of the aggregate',
      },
    ]);
    expect(grid.reports[0]?.metrics).toMatchObject({ 'train-failures': 1 });
    expect([...(grid.reports[0]?.nodeIds ?? [])].sort()).toEqual(['1', '2']);
    expect(lines).toEqual([
      'node 3 train failed: Array "w" holds NaN or Inf: the reply is left out of the aggregate',
    ]);
  });

  it('keeps the global arrays through a round with fewer replies than the strategy needs (TOO_FEW_REPLIES)', async () => {
    const grid = gridOf({ '1': node(1, 1), '2': node(2, 1), '3': node(3, 1) });
    const lines: string[] = [];
    const result = await new Bulyan({ numMaliciousNodes: 1, minTrainNodes: 3, fractionEvaluate: 0 }).start({
      grid,
      initialArrays: initialArrays(),
      numRounds: 2,
      log: (line) => void lines.push(line),
    });
    expect(values(result.arrays)).toEqual([0, 0]);
    expect(lines).toEqual(
      [1, 2].map(
        (r) =>
          `round ${r}: Bulyan with numMaliciousNodes = 1 needs at least 7 valid replies (4f + 3), the round has 3; the global arrays stay as they were`,
      ),
    );
    expect(grid.reports).toHaveLength(2);
  });

  it('counts a node that does not answer in time as NO_REPLY', async () => {
    const silent = new ClientApp({ train: () => new Promise<RecordDict>(() => {}) });
    const result = await new FedAvg({ fractionEvaluate: 0 }).start({
      grid: gridOf({ '1': node(1, 1), '2': silent }),
      initialArrays: initialArrays(),
      numRounds: 1,
      timeoutMs: 20,
      log: () => {},
    });
    expect(values(result.arrays)).toEqual([1, 1]);
    expect(result.failures.get(1)).toEqual([
      { nodeId: '2', messageType: 'train', code: 'NO_REPLY', reason: 'No reply within 0.02 s' },
    ]);
  });

  it('fails the round when no node returns a model', async () => {
    const e = await rejection(
      new FedAvg().start({
        grid: gridOf({ '1': failing(), '2': failing() }),
        initialArrays: initialArrays(),
        numRounds: 2,
        log: () => {},
      }),
    );
    expect(e.code).toBe('RUN_FAILED');
    expect(e.message).toBe('Round 1: no node returned a model (2 of 2 failed: CLIENT_APP_RAISED_EXCEPTION)');
  });

  it('waits for the minimum number of nodes, asking the grid again with growing pauses', async () => {
    const clock = fakeClock();
    const grid = gridOf({ '1': node(1, 1), '2': node(3, 1) }, () =>
      clock.now() < 1000 ? ['1'] : ['1', '2'],
    );
    const result = await new FedAvg().start({ grid, initialArrays: initialArrays(), numRounds: 1, clock });
    expect(clock.sleeps).toEqual([200, 400, 800]);
    expect(values(result.arrays)).toEqual([2, 2]);
    expect(grid.reports[0]?.nodeIds).toHaveLength(2);
  });

  it('fails with a precise UNAVAILABLE once nodeTimeoutMs has passed without enough nodes', async () => {
    const clock = fakeClock();
    const grid = gridOf({ '1': node(1, 1) });
    const e = await rejection(
      new FedAvg({ minAvailableNodes: 2 }).start({
        grid,
        initialArrays: initialArrays(),
        numRounds: 1,
        nodeTimeoutMs: 3000,
        clock,
      }),
    );
    expect(e.code).toBe('UNAVAILABLE');
    expect(e.message).toBe('Round 1, after 3 s: Not enough nodes to train: 1 available, 2 required');
    expect(e.data).toEqual({ available: 1, required: 2, phase: 'train', round: 1, waitedMs: 3000 });
    expect(clock.sleeps).toEqual([200, 400, 800, 1600]); // never past the timeout
    expect(grid.reports).toEqual([]);
  });

  it('keeps each array dtype across rounds (float64 stays float64)', async () => {
    const initial = ArrayRecord.fromArrays({
      w: new Float32Array(2),
      v: { data: Float64Array.of(0.1, 0.2, 0.3, 0.4), shape: [2, 2] },
    });
    const result = await new FedAvg().start({
      grid: gridOf({ '1': node(1, 1), '2': node(2, 3) }),
      initialArrays: initial,
      numRounds: 2,
    });
    const v = result.arrays.get('v', 'float64')!;
    expect(v.shape).toEqual([2, 2]);
    // Each round adds 0.25 · 1 + 0.75 · 2 = 1.75, to float64 precision (float32 would be ~1e-7 off).
    [0.1, 0.2, 0.3, 0.4].forEach((x, i) => {
      expect(v.data[i]).toBeCloseTo(x + 3.5, 14);
    });
    expect(result.arrays.get('w')!.dtype).toBe('float32');
  });

  it('runs FedProx on the same loop, sending proximal-mu every round', async () => {
    const seen: Record<string, unknown>[] = [];
    const result = await new FedProx({ proximalMu: 0.01 }).start({
      grid: gridOf({ '1': node(1, 1, seen), '2': node(3, 1, seen) }),
      initialArrays: initialArrays(),
      numRounds: 2,
    });
    expect(seen.map((c) => c['proximal-mu'])).toEqual([0.01, 0.01, 0.01, 0.01]);
    expect(values(result.arrays)).toEqual([4, 4]);
  });

  it('returns the initial arrays for 0 rounds and refuses bad options', async () => {
    const grid = gridOf({ '1': node(1, 1) });
    const initial = initialArrays();
    const start = (o: Partial<StartOptions>) =>
      new FedAvg().start({ grid, initialArrays: initial, numRounds: 1, ...o });
    expect((await start({ numRounds: 0 })).arrays).toBe(initial);
    expect((await rejection(start({ numRounds: 1.5 }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(start({ timeoutMs: Number.NaN }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(start({ initialArrays: {} as ArrayRecord }))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('Strategy.start aggregates in node order', () => {
  /** A grid whose replies arrive in the opposite order of the nodes. */
  class ReversingGrid extends TestGrid {
    override async sendAndReceive(messages: Iterable<Message>, options?: SendAndReceiveOptions) {
      return (await super.sendAndReceive(messages, options)).reverse();
    }
  }

  it('hands aggregateTrain and aggregateEvaluate the replies by node id, whatever order they arrived in', async () => {
    const seen: string[][] = [];
    class Recording extends FedAvg {
      override aggregateTrain(round: number, replies: Iterable<Message>) {
        seen.push([...replies].map((r) => r.metadata.srcNodeId));
        return super.aggregateTrain(round, replies);
      }
      override aggregateEvaluate(round: number, replies: Iterable<Message>) {
        seen.push([...replies].map((r) => r.metadata.srcNodeId));
        return super.aggregateEvaluate(round, replies);
      }
    }
    const nodes = { b: node(2, 20), c: node(3, 30), a: node(1, 10) };
    await new Recording().start({
      grid: new ReversingGrid(new InMemoryGrid({ runId: 'run', nodes })),
      initialArrays: initialArrays(),
      numRounds: 2,
    });
    expect(seen).toEqual(Array.from({ length: 4 }, () => ['a', 'b', 'c']));
  });
});
