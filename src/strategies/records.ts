/**
 * Weighted averages of records, the aggregation step of FedAvg and its relatives: the replies'
 * ArrayRecords (float32 layers through the fast kernel in aggregate.ts, every other dtype, float16
 * included, as average-dtypes.ts says) and their MetricRecords, each reply weighted by one of its metrics
 * (`num-examples`).
 *
 * Internal: strategies call these; apps see them through `strategy.aggregateTrain(...)`.
 */
import {
  type ArrayEntry,
  ArrayRecord,
  type DType,
  type Message,
  type MetricRecord,
  type MetricValue,
  PollenError,
  type RecordDict,
  type TypedArray,
} from '../sdk/index.js';
import { normalizeWeights, type Precision, type WeightedArrays, weightedAverage } from './aggregate.js';
import { averageOf } from './average-dtypes.js';

function invalid(message: string, hint?: string): PollenError {
  return new PollenError('INVALID_ARGUMENT', message, hint === undefined ? {} : { hint });
}

/** A reply's content and where it came from, for error messages. */
export interface ReplyContent {
  nodeId: string;
  content: RecordDict;
}

/** The replies that carry content (error replies are a round's failures, not its data). */
export function contentsOf(replies: Iterable<Message>): ReplyContent[] {
  const out: ReplyContent[] = [];
  for (const m of replies)
    if (m.content !== undefined) out.push({ nodeId: m.metadata.srcNodeId, content: m.content });
  return out;
}

function describe(r: ReplyContent, k: number): string {
  return `Reply ${k} (node ${r.nodeId})`;
}

/** The one record of a kind a reply must hold (Flower's rule: one ArrayRecord, one MetricRecord). */
function single<R>(records: Map<string, R>, what: string, r: ReplyContent, k: number): R {
  if (records.size !== 1)
    throw invalid(
      `${describe(r, k)} holds ${records.size} ${what}s: a reply must hold exactly one`,
      `The ClientApp replies with one ${what} (e.g. "arrays") and one MetricRecord (e.g. "metrics").`,
    );
  return records.values().next().value as R;
}

export function replyArrays(r: ReplyContent, k: number): ArrayRecord {
  return single(r.content.arrayRecords, 'ArrayRecord', r, k);
}

export function replyMetrics(r: ReplyContent, k: number): MetricRecord {
  return single(r.content.metricRecords, 'MetricRecord', r, k);
}

/** The reply's weight: the metric `key`, a finite number > 0. */
export function replyWeight(metrics: MetricRecord, key: string, r: ReplyContent, k: number): number {
  const n = metrics.get(key);
  if (typeof n !== 'number' || !(n > 0))
    throw invalid(
      `${describe(r, k)} reports ${key} = ${JSON.stringify(n)}: it must be a number > 0`,
      `Every reply's MetricRecord carries "${key}"; a node that used no examples must not send a reply to be averaged.`,
    );
  return n;
}

function checkNumExamples(replies: readonly { numExamples: number }[]): void {
  if (replies.length === 0) throw invalid('No replies to aggregate', 'A round needs at least one reply.');
  replies.forEach((r, k) => {
    const n = r.numExamples;
    if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0) {
      throw invalid(
        `Reply ${k} reports numExamples = ${String(n)}: it must be finite and > 0`,
        'A node that trained or evaluated on no examples must not send a reply to be averaged.',
      );
    }
  });
}

function finite(value: unknown, k: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw invalid(`Reply ${k} metric "${name}" is ${String(value)}: metrics must be finite numbers`);
  return value;
}

/**
 * Weighted average of the metrics by numExamples. A metric missing from some replies is
 * averaged over the replies that report it; a list is averaged element by element (every reply
 * that reports it gives the same length). A non-finite value is refused.
 */
export function aggregateMetrics(
  replies: readonly { numExamples: number; metrics: Readonly<Record<string, MetricValue>> }[],
): Record<string, MetricValue> {
  checkNumExamples(replies);
  const sums = new Map<string, { sum: number[]; list: boolean; weight: number }>();
  replies.forEach((r, k) => {
    for (const [name, value] of Object.entries(r.metrics)) {
      const list = Array.isArray(value);
      const values = list ? (value as readonly number[]) : [value as number];
      const s = sums.get(name) ?? { sum: new Array<number>(values.length).fill(0), list, weight: 0 };
      if (s.list !== list || s.sum.length !== values.length)
        throw invalid(`Reply ${k} metric "${name}" does not have the shape of the other replies' "${name}"`);
      values.forEach((v, i) => {
        s.sum[i] = (s.sum[i] as number) + finite(v, k, name) * r.numExamples;
      });
      s.weight += r.numExamples;
      sums.set(name, s);
    }
  });
  const out: Record<string, MetricValue> = {};
  for (const [name, { sum, list, weight }] of sums) {
    const avg = sum.map((v) => v / weight);
    out[name] = list ? avg : (avg[0] as number);
  }
  return out;
}

/** The replies' MetricRecords averaged with `weights`, leaving out the weight metric itself. */
export function aggregateMetricRecords(
  records: readonly MetricRecord[],
  weights: readonly number[],
  weightKey: string,
): Record<string, MetricValue> {
  return aggregateMetrics(
    records.map((m, k) => {
      const metrics = m.toObject();
      delete metrics[weightKey];
      return { numExamples: weights[k] as number, metrics };
    }),
  );
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Check that the replies' ArrayRecords have the same names (in reply 0's order) and, per name,
 * the same dtype and shape; returns the names. INVALID_ARGUMENT otherwise, naming the reply, its
 * node and the array.
 */
export function checkSameArrays(replies: readonly ReplyContent[], records: readonly ArrayRecord[]): string[] {
  const first = records[0];
  if (first === undefined) throw invalid('No replies to aggregate', 'A round needs at least one reply.');
  const names = [...first.keys()];
  records.forEach((record, k) => {
    const keys = [...record.keys()];
    if (keys.length !== names.length || names.some((n) => !record.has(n)))
      throw invalid(
        `${describe(replies[k] as ReplyContent, k)} has arrays [${keys.join(', ')}], reply 0 has [${names.join(', ')}]`,
        'Every node must send the same named arrays.',
      );
  });
  for (const name of names) {
    const { dtype, shape } = first.get(name)!;
    records.forEach((record, k) => {
      const e = record.get(name)!;
      if (e.dtype !== dtype || !sameShape(e.shape, shape))
        throw invalid(
          `${describe(replies[k] as ReplyContent, k)} array "${name}" is ${e.dtype} [${e.shape.join(', ')}], reply 0 sends ${dtype} [${shape.join(', ')}]`,
          'Every node must send arrays of the same dtype and shape.',
        );
    });
  }
  return names;
}

/**
 * The weighted average of the replies' ArrayRecords (checked by checkSameArrays). float32 arrays
 * go through the kernel in one pass over all layers, in `precision` (aggregate.ts); the other
 * dtypes as average-dtypes.ts says (float16 in float16 arithmetic as Flower, or with
 * `precision: 'float64'` in float64 rounded once).
 */
export function aggregateArrayRecords(
  replies: readonly ReplyContent[],
  records: readonly ArrayRecord[],
  weights: readonly number[],
  precision: Precision = 'float32',
): ArrayRecord {
  const names = checkSameArrays(replies, records);
  const first = records[0] as ArrayRecord;
  const kernel: string[] = []; // float32: one pass of the kernel over all of them
  const other: string[] = [];
  for (const name of names) (first.get(name)!.dtype === 'float32' ? kernel : other).push(name);
  const averaged = new Map<string, TypedArray>();
  if (kernel.length > 0) {
    const updates: WeightedArrays[] = records.map((record, k) => ({
      arrays: kernel.map((n) => record.get(n)!.data as Float32Array),
      weight: weights[k] as number,
    }));
    weightedAverage(updates, undefined, { precision }).forEach((data, l) => {
      averaged.set(kernel[l] as string, data);
    });
  }
  if (other.length > 0) {
    const ws = normalizeWeights(weights);
    for (const n of other)
      averaged.set(
        n,
        averageOf(
          first.get(n)!.dtype as Exclude<DType, 'float32'>,
          records.map((r) => r.get(n)!.data),
          ws,
          precision,
        ),
      );
  }
  const out = new ArrayRecord();
  for (const name of names) {
    const { dtype, shape } = first.get(name)!;
    out.set(name, { dtype, shape, data: averaged.get(name)! } as ArrayEntry);
  }
  return out;
}
