/**
 * FedMedian (Yin et al., 2018, "Byzantine-Robust Distributed Learning: Towards Optimal
 * Statistical Rates"): the coordinate-wise median of the replies' arrays.
 */
import type { Message } from '../sdk/index.js';
import { coordinatewise, median } from './elementwise.js';
import { FedAvg } from './fedavg.js';
import { ownStrategy, type TrainAggregate } from './strategy.js';

/**
 * Each element of the new arrays is the median of that element over the replies (the mean of the
 * two middle values for an even count), unweighted; metrics are averaged by `num-examples` as in
 * FedAvg. Withstands fewer than half of the replies being arbitrary.
 *
 * @example
 * ```ts
 * const result = await new FedMedian({ minTrainNodes: 5 }).start({ grid, initialArrays, numRounds: 10 });
 * ```
 */
export class FedMedian extends FedAvg {
  /** The coordinate-wise median of the finite replies (the others are returned as failures). */
  override aggregateTrain(_serverRound: number, replies: Iterable<Message>): TrainAggregate {
    const { kept, failures } = this.finiteTrainReplies(replies);
    return this.trainAggregate(kept, coordinatewise(kept.arrays, median), failures);
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(FedMedian);
