/**
 * FedTrimmedAvg (Yin et al., 2018, "Byzantine-Robust Distributed Learning: Towards Optimal
 * Statistical Rates"): the coordinate-wise trimmed mean of the replies' arrays.
 */
import type { Message } from '../sdk/index.js';
import { coordinatewise } from './elementwise.js';
import { FedAvg, type FedAvgOptions } from './fedavg.js';
import { numberOption } from './options.js';
import { ownStrategy, type TrainAggregate } from './strategy.js';

export interface FedTrimmedAvgOptions extends FedAvgOptions {
  /** Share cut off each tail, in [0, 0.5) (default 0.2). */
  beta?: number;
}

/**
 * Per element, over n replies: sort the n values, drop the ⌊β·n⌋ smallest and the ⌊β·n⌋
 * largest, and average the rest, unweighted; metrics are averaged by `num-examples`. Withstands
 * up to ⌊β·n⌋ arbitrary replies.
 *
 * @example
 * ```ts
 * const result = await new FedTrimmedAvg({ beta: 0.2 }).start({ grid, initialArrays, numRounds: 10 });
 * ```
 */
export class FedTrimmedAvg extends FedAvg {
  readonly beta: number;

  constructor(options: FedTrimmedAvgOptions = {}) {
    super(options);
    this.beta = numberOption('beta', options.beta, 0.2, (v) => v >= 0 && v < 0.5, 'in [0, 0.5)');
  }

  /** The coordinate-wise trimmed mean of the finite replies (the others are returned as failures). */
  override aggregateTrain(_serverRound: number, replies: Iterable<Message>): TrainAggregate {
    const { kept, failures } = this.finiteTrainReplies(replies);
    const n = kept.arrays.length;
    const cut = Math.floor(this.beta * n);
    const arrays = coordinatewise(kept.arrays, (values) => {
      values.sort();
      let sum = 0;
      for (let k = cut; k < n - cut; k++) sum += values[k] as number;
      return sum / (n - 2 * cut);
    });
    return this.trainAggregate(kept, arrays, failures);
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(FedTrimmedAvg);
