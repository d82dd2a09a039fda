/**
 * MultiKrum (Blanchard et al., 2017, "Machine Learning with Adversaries: Byzantine Tolerant
 * Gradient Descent"): keep the replies closest to their neighbours, average those.
 */
import { type ArrayRecord, type Message, PollenError } from '../sdk/index.js';
import { data, type FloatData } from './elementwise.js';
import { FedAvg, type FedAvgOptions } from './fedavg.js';
import { integerOption } from './options.js';
import { aggregateArrayRecords } from './records.js';
import { pick } from './replies.js';
import { ownStrategy, type TrainAggregate } from './strategy.js';

export interface MultiKrumOptions extends FedAvgOptions {
  /** f, the number of malicious nodes to withstand (default 0). */
  numMaliciousNodes?: number;
  /** m, the number of replies kept and averaged (default 1: Krum). */
  numNodesToSelect?: number;
}

/** Squared L2 distances between every pair of replies, over all their arrays (float64). */
function squaredDistances(records: readonly ArrayRecord[]): Float64Array[] {
  const n = records.length;
  const d = records.map(() => new Float64Array(n));
  const names = [...(records[0] as ArrayRecord).keys()];
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) {
      let sum = 0;
      for (const name of names) {
        const a = data(records[i] as ArrayRecord, name);
        const b = data(records[j] as ArrayRecord, name) as FloatData;
        for (let e = 0; e < a.length; e++) {
          const t = (a[e] as number) - (b[e] as number);
          sum += t * t;
        }
      }
      (d[i] as Float64Array)[j] = sum;
      (d[j] as Float64Array)[i] = sum;
    }
  return d;
}

/** The start of a TOO_FEW_REPLIES message: the strategy, its f (less the replies left out) and what it needs. */
export function tooFew(
  strategy: string,
  f: number,
  leftOut: number,
  required: number,
  formula: string,
): string {
  const less = leftOut > 0 ? `, f = ${f} less the ${leftOut} left out for NaN or Inf` : '';
  return `${strategy} with numMaliciousNodes = ${f} needs at least ${required} valid replies (${formula}${less})`;
}

/**
 * Krum's selection: the score of reply i is the sum of its squared distances to its
 * max(1, n − f − 2) nearest other replies; the indices of the `m` lowest scores come back, lowest
 * first (a tie goes to the earlier reply).
 */
export function multiKrumSelect(records: readonly ArrayRecord[], f: number, m: number): number[] {
  const n = records.length;
  const d = squaredDistances(records);
  const nearest = Math.min(Math.max(1, n - f - 2), n - 1);
  const scores = d.map((row, i) => {
    const others = Array.from(row).filter((_, j) => j !== i);
    others.sort((a, b) => a - b);
    return others.slice(0, nearest).reduce((s, x) => s + x, 0);
  });
  const order = scores
    .map((_, i) => i)
    .sort((a, b) => (scores[a] as number) - (scores[b] as number) || a - b);
  return order.slice(0, m);
}

/**
 * Per round: score each finite reply by Krum (see `multiKrumSelect`), keep the
 * `numNodesToSelect` best and average them weighted by `num-examples` (their metrics too). With
 * f > 0 a round needs n ≥ 2f + 3 replies (TOO_FEW_REPLIES otherwise: the guarantee needs n > 2f + 2).
 * Replies left out for NaN or Inf came from faulty nodes and count among the f.
 *
 * @example
 * ```ts
 * const result = await new MultiKrum({ numMaliciousNodes: 2, numNodesToSelect: 4 }).start({ grid, initialArrays, numRounds: 10 });
 * ```
 */
export class MultiKrum extends FedAvg {
  readonly numMaliciousNodes: number;
  readonly numNodesToSelect: number;

  constructor(options: MultiKrumOptions = {}) {
    super(options);
    this.numMaliciousNodes = integerOption('numMaliciousNodes', options.numMaliciousNodes, 0, 0);
    this.numNodesToSelect = integerOption('numNodesToSelect', options.numNodesToSelect, 1, 1);
  }

  /** The weighted average of the selected replies (see the class). */
  override aggregateTrain(_serverRound: number, replies: Iterable<Message>): TrainAggregate {
    const { kept, failures } = this.finiteTrainReplies(replies);
    const n = kept.arrays.length;
    // A reply left out for NaN or Inf came from a faulty node: it counts among the f.
    const f = Math.max(0, this.numMaliciousNodes - failures.length);
    if (f > 0 && n < 2 * f + 3)
      throw new PollenError(
        'TOO_FEW_REPLIES',
        `${tooFew(this.constructor.name, this.numMaliciousNodes, failures.length, 2 * f + 3, '2f + 3')}, the round has ${n}`,
        { data: { required: 2 * f + 3, valid: n, failures } },
      );
    const selected = pick(kept, multiKrumSelect(kept.arrays, f, this.numNodesToSelect));
    const arrays = aggregateArrayRecords(
      selected.contents,
      selected.arrays,
      selected.weights,
      this.averagePrecision,
    );
    return this.trainAggregate(selected, arrays, failures);
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(MultiKrum);
