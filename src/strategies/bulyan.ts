/**
 * Bulyan (El Mhamdi et al., 2018, "The Hidden Vulnerability of Distributed Learning in
 * Byzantium"): select with MultiKrum, then average per element the values nearest the median.
 */
import { type Message, PollenError } from '../sdk/index.js';
import { coordinatewise, median } from './elementwise.js';
import { FedAvg, type FedAvgOptions } from './fedavg.js';
import { multiKrumSelect, tooFew } from './multikrum.js';
import { integerOption } from './options.js';
import { pick } from './replies.js';
import { ownStrategy, type TrainAggregate } from './strategy.js';

export interface BulyanOptions extends FedAvgOptions {
  /** f, the number of malicious nodes to withstand (default 0). */
  numMaliciousNodes?: number;
}

/**
 * Indices 0..n−1 into `order` by increasing `distance`, the earlier index first at equal distance.
 * An insertion sort: θ is small (at most the replies of a round), and inline comparisons beat
 * `Array.prototype.sort` with a comparator by several times there (bench/strategies.ts).
 */
export function nearestFirst(order: Int32Array, distance: Float64Array): void {
  for (let i = 0; i < order.length; i++) {
    const d = distance[i] as number;
    let j = i;
    // Strictly greater moves: an equal distance stays after the earlier index.
    for (; j > 0 && (distance[order[j - 1] as number] as number) > d; j--) order[j] = order[j - 1] as number;
    order[j] = i;
  }
}

/**
 * With n finite replies (n ≥ 4f + 3, else TOO_FEW_REPLIES): MultiKrum keeps θ = n − 2f of them;
 * per element, the β = θ − 2f kept values nearest the kept values' median are averaged
 * (unweighted; at equal distance the earlier reply in node order wins). Metrics are the kept
 * replies', averaged by `num-examples`. Replies left out for NaN or Inf came from faulty nodes
 * and count among the f.
 *
 * @example
 * ```ts
 * const result = await new Bulyan({ numMaliciousNodes: 1 }).start({ grid, initialArrays, numRounds: 10 });
 * ```
 */
export class Bulyan extends FedAvg {
  readonly numMaliciousNodes: number;

  constructor(options: BulyanOptions = {}) {
    super(options);
    this.numMaliciousNodes = integerOption('numMaliciousNodes', options.numMaliciousNodes, 0, 0);
  }

  /** Bulyan's aggregate of the finite replies (see the class). */
  override aggregateTrain(_serverRound: number, replies: Iterable<Message>): TrainAggregate {
    const { kept, failures } = this.finiteTrainReplies(replies);
    const n = kept.arrays.length;
    // A reply left out for NaN or Inf came from a faulty node: it counts among the f.
    const f = Math.max(0, this.numMaliciousNodes - failures.length);
    if (n < 4 * f + 3)
      throw new PollenError(
        'TOO_FEW_REPLIES',
        `${tooFew('Bulyan', this.numMaliciousNodes, failures.length, 4 * f + 3, '4f + 3')}, the round has ${n}`,
        { data: { required: 4 * f + 3, valid: n, failures } },
      );
    const theta = n - 2 * f;
    const beta = theta - 2 * f;
    // Back in reply (node) order, so that ties in distance go to the earlier node.
    const selected = pick(
      kept,
      multiKrumSelect(kept.arrays, f, theta).sort((a, b) => a - b),
    );
    const order = new Int32Array(theta);
    const distance = new Float64Array(theta);
    const scratch = new Float64Array(theta);
    const arrays = coordinatewise(selected.arrays, (values) => {
      scratch.set(values);
      const med = median(scratch);
      for (let k = 0; k < theta; k++) distance[k] = Math.abs((values[k] as number) - med);
      nearestFirst(order, distance);
      let sum = 0;
      for (let k = 0; k < beta; k++) sum += values[order[k] as number] as number;
      return sum / beta;
    });
    return this.trainAggregate(selected, arrays, failures);
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(Bulyan);
