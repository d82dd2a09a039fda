/**
 * FedAvgM (Hsu et al., 2019, "Measuring the Effects of Non-Identical Data Distribution for
 * Federated Visual Classification"): FedAvg whose server applies SGD with momentum to the
 * pseudo-gradient x − avg.
 */
import { ArrayRecord, type Message } from '../sdk/index.js';
import { checkLikeCurrent, data, type FloatData, mapArrays, zerosLike } from './elementwise.js';
import type { FedAvgOptions } from './fedavg.js';
import { numberOption } from './options.js';
import { StatefulFedAvg } from './stateful.js';
import { ownStrategy, type TrainAggregate } from './strategy.js';

export interface FedAvgMOptions extends FedAvgOptions {
  /** Server learning rate η (default 1). */
  serverLearningRate?: number;
  /** Server momentum μ in [0, 1) (default 0: no momentum). */
  serverMomentum?: number;
}

/**
 * Per element, with g = x − avg the pseudo-gradient: with μ > 0, b ← μ·b + g (b = g in the first
 * round) and g ← b; then x ← x − η·g. With η = 1 and μ = 0 (the defaults) this is FedAvg.
 * `configureTrain` records the first global arrays; each aggregation then updates them, as in
 * Flower's message-API FedAvgM. Its state (`saveState`): `current` (x) and `momentum` (b).
 *
 * @example
 * ```ts
 * const result = await new FedAvgM({ serverLearningRate: 1, serverMomentum: 0.9 }).start({ grid, initialArrays, numRounds: 10 });
 * ```
 */
export class FedAvgM extends StatefulFedAvg {
  readonly serverLearningRate: number;
  readonly serverMomentum: number;

  constructor(options: FedAvgMOptions = {}) {
    super(options, ['momentum'], true);
    this.serverLearningRate = numberOption(
      'serverLearningRate',
      options.serverLearningRate,
      1,
      (v) => v > 0,
      'a number > 0',
    );
    this.serverMomentum = numberOption(
      'serverMomentum',
      options.serverMomentum,
      0,
      (v) => v >= 0 && v < 1,
      'in [0, 1)',
    );
  }

  /** FedAvg, then the momentum step (see the class); the plain average when η = 1 and μ = 0. */
  override aggregateTrain(serverRound: number, replies: Iterable<Message>): TrainAggregate {
    const avg = super.aggregateTrain(serverRound, replies);
    if (this.serverLearningRate === 1 && this.serverMomentum === 0) return avg;
    const x = this.current();
    checkLikeCurrent(x, avg.arrays, "The replies' average");
    const momentum = new ArrayRecord();
    const arrays = mapArrays(x, (name, out) => {
      const entry = x.get(name)!;
      const xs = data(x, name);
      const a = data(avg.arrays, name);
      const b0 = this.state.get('momentum')?.get(name)?.data as FloatData | undefined;
      const b = zerosLike(entry);
      for (let i = 0; i < out.length; i++) {
        let g = (xs[i] as number) - (a[i] as number);
        if (this.serverMomentum > 0) {
          g = b0 === undefined ? g : this.serverMomentum * (b0[i] as number) + g;
          b[i] = g;
        }
        out[i] = (xs[i] as number) - this.serverLearningRate * g;
      }
      momentum.set(name, { dtype: entry.dtype, shape: entry.shape, data: b });
    });
    if (this.serverMomentum > 0) this.state.set('momentum', momentum);
    this.state.set('current', arrays);
    return { ...avg, arrays };
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(FedAvgM);
