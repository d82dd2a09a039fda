/**
 * A round's train replies made ready for an aggregation step, and the rule for non-finite
 * updates: a reply whose float32 or float64 arrays hold NaN or ±Inf is left out of the aggregate and reported as
 * a failure of the round (code UPDATE_NOT_FINITE) that names its node and the array, so one
 * broken node can neither poison the model nor go unnoticed.
 */
import { type ArrayRecord, type Message, type MetricRecord, PollenError } from '../sdk/index.js';
import { releaseKernelFloat32 } from './kernel-memory.js';
import {
  checkSameArrays,
  contentsOf,
  type ReplyContent,
  replyArrays,
  replyMetrics,
  replyWeight,
} from './records.js';
import type { ReplyFailure } from './strategy.js';

/** The replies with content, each with its one ArrayRecord, MetricRecord and weight. */
export interface TrainReplies {
  contents: ReplyContent[];
  arrays: ArrayRecord[];
  metrics: MetricRecord[];
  weights: number[];
}

/**
 * Gather the replies that carry content (error replies are the loop's failures) and check them:
 * one ArrayRecord and one MetricRecord each, `weightKey` > 0, and the same array names, dtypes
 * (float32 or float64) and shapes in every reply. INVALID_ARGUMENT otherwise.
 */
export function trainReplies(replies: Iterable<Message>, weightKey: string): TrainReplies {
  const contents = contentsOf(replies);
  const arrays = contents.map(replyArrays);
  const metrics = contents.map(replyMetrics);
  const weights = contents.map((r, k) => replyWeight(metrics[k] as MetricRecord, weightKey, r, k));
  checkSameArrays(contents, arrays);
  return { contents, arrays, metrics, weights };
}

/** The replies at `indices`, in that order. */
export function pick(t: TrainReplies, indices: readonly number[]): TrainReplies {
  const at = <T>(xs: T[]) => indices.map((i) => xs[i] as T);
  return { contents: at(t.contents), arrays: at(t.arrays), metrics: at(t.metrics), weights: at(t.weights) };
}

/** Whether every value of a float32 or float64 array is finite. */
function allFinite(x: Float32Array | Float64Array): boolean {
  // x·0 is ±0 for a finite value and NaN for NaN and ±Inf, so the sum is 0 only when every
  // value is finite: a branch-free pass, a third faster than testing each element.
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += (x[i] as number) * 0;
  return sum === 0;
}

/**
 * The name of the first float32 or float64 array of `record` that holds NaN or ±Inf, or
 * undefined. float16 arrays are averaged as they come (an infinity is a float16 value a model
 * may hold, and the Python SDK's FedAvg gives the same bytes); integer and bool arrays are finite.
 */
export function nonFiniteArray(record: ArrayRecord): string | undefined {
  for (const [name, { dtype, data }] of record)
    if ((dtype === 'float32' || dtype === 'float64') && !allFinite(data as Float32Array | Float64Array))
      return name;
  return undefined;
}

/**
 * Split off the replies whose arrays are not finite; they come back as the round's failures.
 * UPDATE_NOT_FINITE when no reply is left.
 */
export function dropNonFinite(t: TrainReplies): { kept: TrainReplies; failures: ReplyFailure[] } {
  const keep: number[] = [];
  const failures: ReplyFailure[] = [];
  t.arrays.forEach((record, k) => {
    const name = nonFiniteArray(record);
    if (name === undefined) keep.push(k);
    else
      failures.push({
        nodeId: (t.contents[k] as ReplyContent).nodeId,
        messageType: 'train',
        code: 'UPDATE_NOT_FINITE',
        reason: `Array "${name}" holds NaN or Inf: the reply is left out of the aggregate`,
      });
  });
  if (keep.length === 0)
    throw new PollenError(
      'UPDATE_NOT_FINITE',
      failures.length === 0
        ? 'The aggregate is not finite although every reply is'
        : `Every reply holds NaN or Inf (nodes ${failures.map((f) => f.nodeId).join(', ')}): nothing is left to aggregate`,
      { data: { failures } },
    );
  return { kept: pick(t, keep), failures };
}

/**
 * Frees the kernel-memory blocks of a round's replies once they are aggregated (Strategy.start has
 * its grid receive training replies there for Pollen's own strategies, which keep none of them), so the next round's replies reuse the memory instead of growing it until garbage
 * collection. An array the aggregate itself holds is kept. Returns the blocks freed.
 */
export function releaseReplyArrays(replies: readonly Message[], aggregate?: ArrayRecord): number {
  const kept = new Set<unknown>();
  for (const [, entry] of aggregate ?? []) kept.add(entry.data);
  let freed = 0;
  for (const reply of replies) {
    if (!reply.hasContent()) continue;
    for (const record of reply.content.arrayRecords.values())
      for (const [, { data }] of record)
        if (data instanceof Float32Array && !kept.has(data) && releaseKernelFloat32(data)) freed++;
  }
  return freed;
}
