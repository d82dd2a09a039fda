/**
 * Strategy: the whole federated loop, as Flower's message-API strategies run it. A strategy says
 * how to configure a round (which nodes get which message) and how to aggregate the replies;
 * `start()` runs the rounds over a Grid and reports each one with the run.
 */
import {
  ArrayRecord,
  ConfigRecord,
  type Grid,
  type Message,
  type MessageType,
  MetricRecord,
  PollenError,
  RecordDict,
  reportRound,
} from '../sdk/index.js';
import { KERNEL_MEMORY_GRID } from './kernel-memory.js';
import { kernelWorkerDrops } from './kernel-workers.js';
import { releaseReplyArrays } from './replies.js';

/**
 * Where the loop's time comes from (waiting for nodes, round durations). Tests pass a fake one.
 *
 * @example
 * ```ts
 * let now = 0;
 * const clock: Clock = { now: () => now, sleep: async (ms) => void (now += ms) };
 * ```
 */
export interface Clock {
  /** Milliseconds, from any fixed origin. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** Central evaluation of the global arrays (Flower's `evaluate_fn`); undefined records nothing. */
export type EvaluateFn = (
  serverRound: number,
  arrays: ArrayRecord,
) => MetricRecord | undefined | Promise<MetricRecord | undefined>;

/** A node that was sent a message and did not give a usable reply. */
export interface ReplyFailure {
  nodeId: string;
  messageType: MessageType;
  /** The error reply's code (e.g. `CLIENT_APP_RAISED_EXCEPTION`), or `NO_REPLY` when none came in time. */
  code: string;
  reason: string;
}

/** One finished round, as `onRound` sees it. */
export interface RoundSummary {
  serverRound: number;
  /** The global arrays after this round's aggregation. */
  arrays: ArrayRecord;
  /** The nodes sent a train message (those that returned a model are reported with the round). */
  trainNodeIds: string[];
  /** The nodes sent an evaluate message ([] when evaluation is off). */
  evaluateNodeIds: string[];
  /** The train replies' metrics, averaged. */
  trainMetrics: MetricRecord;
  /** The evaluate replies' metrics, averaged; undefined without evaluate replies. */
  evaluateMetrics: MetricRecord | undefined;
  /** What `evaluateFn` returned. */
  serverEvaluateMetrics: MetricRecord | undefined;
  failures: ReplyFailure[];
  /** Wall time of the round by the clock: configure, train, aggregate, evaluate. */
  seconds: number;
}

export interface StartOptions {
  grid: Grid;
  /** The global model the first round sends. */
  initialArrays: ArrayRecord;
  /** Rounds to run (0 runs none and returns the initial arrays). */
  numRounds: number;
  /** How long a round waits for the replies to one batch of messages (default one hour, as Flower). */
  timeoutMs?: number;
  /** Sent with every train message; the strategy adds `server-round` to a copy. */
  trainConfig?: ConfigRecord;
  /** Sent with every evaluate message; the strategy adds `server-round` to a copy. */
  evaluateConfig?: ConfigRecord;
  /** Central evaluation, called with round 0 (the initial arrays) and after each round. */
  evaluateFn?: EvaluateFn;
  /** How long a round waits for enough nodes to be available before it fails (default 60 s). */
  nodeTimeoutMs?: number;
  /** Called after each round has been reported. */
  onRound?: (round: RoundSummary) => void | Promise<void>;
  /** Where the loop says which nodes failed (default: one line each on stderr, the run log). */
  log?: (line: string) => void;
  clock?: Clock;
}

/** What `start()` returns: the final arrays and, per round, the metrics (Flower's `Result`). */
export interface StrategyResult {
  arrays: ArrayRecord;
  /** Round → the train replies' metrics, averaged. */
  trainMetrics: Map<number, MetricRecord>;
  /** Round → the evaluate replies' metrics, averaged (rounds with evaluate replies only). */
  evaluateMetrics: Map<number, MetricRecord>;
  /** Round → `evaluateFn`'s metrics; round 0 is the initial arrays. */
  serverEvaluateMetrics: Map<number, MetricRecord>;
  /** Round → the nodes that failed in it ([] for a clean round). */
  failures: Map<number, ReplyFailure[]>;
}

/** `aggregateTrain`'s result: the new global arrays and the replies' metrics. */
export interface TrainAggregate {
  arrays: ArrayRecord;
  metrics: MetricRecord;
  /** Sum of the replies' weights (their `num-examples`). */
  numExamples: number;
  numReplies: number;
  /**
   * Replies the strategy left out by its rules (NaN or Inf in an update: UPDATE_NOT_FINITE);
   * `start()` reports them with the round's failures. Absent when none was.
   */
  failures?: ReplyFailure[];
}

/** `aggregateEvaluate`'s result: the replies' metrics. */
export interface EvaluateAggregate {
  metrics: MetricRecord;
  numExamples: number;
  numReplies: number;
}

const DEFAULT_TIMEOUT_MS = 3_600_000;
const DEFAULT_NODE_TIMEOUT_MS = 60_000;
/** Waiting for nodes asks the grid again after 200 ms, then twice as long each time, up to 5 s. */
const FIRST_POLL_MS = 200;
const MAX_POLL_MS = 5_000;

interface Phase {
  nodeIds: string[];
  replies: Message[];
  failures: ReplyFailure[];
}

function invalid(message: string): PollenError {
  return new PollenError('INVALID_ARGUMENT', message);
}

function checkStart(o: StartOptions): void {
  if (!(o.initialArrays instanceof ArrayRecord)) throw invalid('initialArrays must be an ArrayRecord');
  if (!Number.isSafeInteger(o.numRounds) || o.numRounds < 0)
    throw invalid(`numRounds must be an integer >= 0, got ${String(o.numRounds)}`);
  for (const key of ['timeoutMs', 'nodeTimeoutMs'] as const) {
    const v = o[key];
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && v !== Number.POSITIVE_INFINITY))
      throw invalid(`${key} must be a finite number >= 0, got ${String(v)}`);
  }
}

function byNode(a: Message, b: Message): number {
  const x = a.metadata.srcNodeId;
  const y = b.metadata.srcNodeId;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Error replies, and sampled nodes whose reply did not come in time. */
function failuresOf(
  type: MessageType,
  sent: Message[],
  replies: Message[],
  timeoutMs: number,
): ReplyFailure[] {
  const out: ReplyFailure[] = [];
  const answered = new Set<string>();
  for (const r of replies) {
    answered.add(r.metadata.srcNodeId);
    if (r.error !== undefined)
      out.push({
        nodeId: r.metadata.srcNodeId,
        messageType: type,
        code: r.error.code,
        reason: r.error.reason,
      });
  }
  for (const m of sent) {
    const nodeId = m.metadata.dstNodeId;
    if (!answered.has(nodeId))
      out.push({
        nodeId,
        messageType: type,
        code: 'NO_REPLY',
        reason: `No reply within ${timeoutMs / 1000} s`,
      });
  }
  return out;
}

/** The numbers reported with the round: train, then evaluate, then central metrics, and failure counts. */
function reportedMetrics(r: RoundSummary): Record<string, number> {
  const out: Record<string, number> = {};
  for (const record of [r.trainMetrics, r.evaluateMetrics, r.serverEvaluateMetrics])
    for (const [name, value] of record ?? []) if (typeof value === 'number') out[name] = value;
  for (const type of ['train', 'evaluate'] as const) {
    const n = r.failures.filter((f) => f.messageType === type).length;
    if (n > 0) out[`${type}-failures`] = n;
  }
  return out;
}

/** Pollen's strategy classes: their aggregation keeps no reply array past the round. */
const OWN_STRATEGIES = new WeakSet<object>();

/**
 * Marks `cls` as one of Pollen's strategies (internal: each catalogue class calls it). `start()`
 * on an instance of exactly such a class receives training replies into the kernel's memory and
 * frees them after aggregating. A subclass may override any step that sees the replies
 * (aggregateTrain, or the protected helpers it calls) and keep them, so it gets ordinary arrays.
 */
export function ownStrategy(cls: abstract new (...args: never[]) => Strategy): void {
  OWN_STRATEGIES.add(cls);
}

/**
 * The base of every strategy: subclasses say how to configure and aggregate a round, and
 * `start()` runs the loop. `configureTrain` / `configureEvaluate` get the ids of the nodes
 * available now and throw a PollenError `UNAVAILABLE` when they are too few; `start()` then asks
 * the grid again until `nodeTimeoutMs` has passed.
 *
 * @example
 * ```ts
 * // A strategy that trains on every node and keeps the first reply's arrays.
 * class FirstReply extends FedAvg {
 *   override aggregateTrain(serverRound: number, replies: Iterable<Message>): TrainAggregate {
 *     const first = [...replies].find((r) => r.hasContent());
 *     return super.aggregateTrain(serverRound, first === undefined ? [] : [first]);
 *   }
 * }
 * ```
 */
export abstract class Strategy {
  /** The train messages of a round: the global arrays and the config, for the sampled nodes. */
  abstract configureTrain(
    serverRound: number,
    arrays: ArrayRecord,
    config: ConfigRecord,
    nodeIds: readonly string[],
  ): Message[];

  /** The new global arrays and metrics from a round's train replies (error replies are skipped). */
  abstract aggregateTrain(serverRound: number, replies: Iterable<Message>): TrainAggregate;

  /** The evaluate messages of a round ([] skips client-side evaluation). */
  abstract configureEvaluate(
    serverRound: number,
    arrays: ArrayRecord,
    config: ConfigRecord,
    nodeIds: readonly string[],
  ): Message[];

  /** The metrics of a round's evaluate replies (error replies are skipped). */
  abstract aggregateEvaluate(serverRound: number, replies: Iterable<Message>): EvaluateAggregate;

  /**
   * The strategy's state between rounds (optimizer moments, momentum, the global arrays it
   * updates) as a RecordDict: save it at a round boundary, `loadState` it into a new strategy
   * with the same options, and the next rounds give the same numbers. Empty for a stateless
   * strategy such as FedAvg. The arrays are copies.
   *
   * @example
   * ```ts
   * const saved = strategy.saveState(); // after round 3
   * const resumed = new FedAdam({ eta: 0.01 });
   * resumed.loadState(saved); // round 4 onwards as if never stopped
   * ```
   */
  saveState(): RecordDict {
    return new RecordDict();
  }

  /** Restore what `saveState` returned (see there); a stateless strategy has nothing to restore. */
  loadState(_state: RecordDict): void {}

  /**
   * Run `numRounds` rounds: train on sampled nodes and aggregate, evaluate on sampled nodes,
   * evaluate centrally with `evaluateFn`, report the round with the run (`pollen list --run-id`),
   * call `onRound`. A round fails when fewer nodes than required are available after
   * `nodeTimeoutMs` (UNAVAILABLE) or when no train reply succeeds (RUN_FAILED); failed replies
   * otherwise are logged, counted (`train-failures`, `evaluate-failures`) and left out. Replies
   * are aggregated in node-id order, whatever order they arrive in, so a seeded run repeats bit
   * for bit.
   *
   * Reported metric names are the replies' own (train, then evaluate, then central: a later one
   * wins a shared name), so name them apart, e.g. `train-loss`, `loss`, `centralized-loss`.
   *
   * @example
   * ```ts
   * const result = await new FedAvg({ fractionTrain: 0.5 }).start({
   *   grid,
   *   initialArrays: ArrayRecord.fromArrays({ w: new Float32Array(10) }),
   *   numRounds: 3,
   *   trainConfig: new ConfigRecord({ 'learning-rate': 0.01 }),
   *   evaluateFn: (round, arrays) => new MetricRecord({ 'centralized-accuracy': test(arrays) }),
   * });
   * result.arrays; // the final global model
   * result.evaluateMetrics.get(3)?.get('accuracy');
   * ```
   */
  async start(options: StartOptions): Promise<StrategyResult> {
    checkStart(options);
    const { grid, numRounds, evaluateFn } = options;
    const clock = options.clock ?? systemClock;
    const log = options.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const result: StrategyResult = {
      arrays: options.initialArrays,
      trainMetrics: new Map(),
      evaluateMetrics: new Map(),
      serverEvaluateMetrics: new Map(),
      failures: new Map(),
    };
    const initial = await evaluateFn?.(0, result.arrays);
    if (initial !== undefined) result.serverEvaluateMetrics.set(0, initial);

    // Training replies straight into the kernel's memory, read there in place and freed once
    // aggregated: only from a grid that says it honours the option (not a wrapper that might keep
    // what it passes on), and for one of Pollen's own strategies (it keeps no reply array).
    const inPlace = OWN_STRATEGIES.has(this.constructor) && Reflect.get(grid, KERNEL_MEMORY_GRID) === true;
    const phase = async (type: MessageType, serverRound: number): Promise<Phase> => {
      const config = (type === 'train' ? options.trainConfig : options.evaluateConfig) ?? new ConfigRecord();
      const sent = await this.#configure(type, serverRound, result.arrays, config, options, clock);
      if (sent.length === 0) return { nodeIds: [], replies: [], failures: [] };
      // In node order, whatever order they arrived in: the aggregate's float sums, and so a
      // seeded run's model, are then the same in every run of the app (and in a simulation).
      const kernelMemory = inPlace && type === 'train';
      const replies = [...(await grid.sendAndReceive(sent, { timeoutMs, kernelMemory }))].sort(byNode);
      const failures = failuresOf(type, sent, replies, timeoutMs);
      for (const f of failures) log(`node ${f.nodeId} ${type} failed: ${f.reason}`);
      return { nodeIds: sent.map((m) => m.metadata.dstNodeId), replies, failures };
    };

    for (let serverRound = 1; serverRound <= numRounds; serverRound++) {
      const started = clock.now();
      const train = await phase('train', serverRound);
      if (!train.replies.some((r) => r.hasContent())) {
        const codes = [...new Set(train.failures.map((f) => f.code))].join(', ');
        throw new PollenError(
          'RUN_FAILED',
          `Round ${serverRound}: no node returned a model (${train.failures.length} of ${train.nodeIds.length} failed: ${codes})`,
          { data: { round: serverRound, failures: train.failures } },
        );
      }
      const trained = this.#aggregateTrain(serverRound, train.replies, log, inPlace);
      result.arrays = trained.arrays ?? result.arrays;
      train.failures.push(...(trained.failures ?? []));
      const evaluation = await phase('evaluate', serverRound);
      const evaluated = evaluation.replies.some((r) => r.hasContent())
        ? this.aggregateEvaluate(serverRound, evaluation.replies).metrics
        : undefined;
      const central = await evaluateFn?.(serverRound, result.arrays);
      const summary: RoundSummary = {
        serverRound,
        arrays: result.arrays,
        trainNodeIds: train.nodeIds,
        evaluateNodeIds: evaluation.nodeIds,
        trainMetrics: trained.metrics,
        evaluateMetrics: evaluated,
        serverEvaluateMetrics: central,
        failures: [...train.failures, ...evaluation.failures],
        seconds: (clock.now() - started) / 1000,
      };
      result.trainMetrics.set(serverRound, trained.metrics);
      if (evaluated !== undefined) result.evaluateMetrics.set(serverRound, evaluated);
      if (central !== undefined) result.serverEvaluateMetrics.set(serverRound, central);
      result.failures.set(serverRound, summary.failures);
      const left = new Set(train.failures.map((f) => f.nodeId));
      await reportRound(grid, {
        round: serverRound,
        metrics: reportedMetrics(summary),
        // The nodes whose model went into the aggregate; the failed ones are counted apart.
        nodeIds: train.replies
          .filter((r) => r.hasContent() && !left.has(r.metadata.srcNodeId))
          .map((r) => r.metadata.srcNodeId),
      });
      await options.onRound?.(summary);
    }
    return result;
  }

  /**
   * aggregateTrain, logging the replies it left out. A round with fewer valid replies than the
   * strategy needs (TOO_FEW_REPLIES) keeps the global arrays as they were, as Flower does.
   * `release`: the replies' arrays in the kernel's memory are freed afterwards, whatever happened
   * (garbage collection frees them instead after a round that dropped kernel workers).
   */
  #aggregateTrain(
    serverRound: number,
    replies: Message[],
    log: (line: string) => void,
    release: boolean,
  ): Omit<TrainAggregate, 'arrays'> & { arrays?: ArrayRecord } {
    let trained: TrainAggregate | undefined;
    const drops = kernelWorkerDrops();
    try {
      trained = this.aggregateTrain(serverRound, replies);
      for (const f of trained.failures ?? []) log(`node ${f.nodeId} train failed: ${f.reason}`);
      return trained;
    } catch (e) {
      if (!(e instanceof PollenError && e.code === 'TOO_FEW_REPLIES')) throw e;
      log(`round ${serverRound}: ${e.message}; the global arrays stay as they were`);
      return { metrics: new MetricRecord(), numExamples: 0, numReplies: 0 };
    } finally {
      // Not after a round whose kernel workers were dropped: one not yet stopped may still read.
      if (release && kernelWorkerDrops() === drops) releaseReplyArrays(replies, trained?.arrays);
    }
  }

  /** configureTrain / configureEvaluate on the nodes available now, waiting while they are too few. */
  async #configure(
    type: MessageType,
    serverRound: number,
    arrays: ArrayRecord,
    config: ConfigRecord,
    options: StartOptions,
    clock: Clock,
  ): Promise<Message[]> {
    const waitMs = options.nodeTimeoutMs ?? DEFAULT_NODE_TIMEOUT_MS;
    const since = clock.now();
    for (let pause = FIRST_POLL_MS; ; pause = Math.min(2 * pause, MAX_POLL_MS)) {
      const nodeIds = await options.grid.nodeIds();
      try {
        return type === 'train'
          ? this.configureTrain(serverRound, arrays, config, nodeIds)
          : this.configureEvaluate(serverRound, arrays, config, nodeIds);
      } catch (e) {
        if (!(e instanceof PollenError && e.code === 'UNAVAILABLE')) throw e;
        const waited = clock.now() - since;
        if (waited >= waitMs)
          throw new PollenError(
            'UNAVAILABLE',
            `Round ${serverRound}, after ${waited / 1000} s: ${e.message}`,
            {
              hint: e.hint,
              data: { ...e.data, round: serverRound, waitedMs: waited },
            },
          );
        await clock.sleep(Math.min(pause, waitMs - waited));
      }
    }
  }
}
