/**
 * q-FedAvg (Li et al., 2020, "Fair Resource Allocation in Federated Learning"): weigh each
 * node's update by its training loss to the power q, so nodes the model serves badly count more.
 */
import { type Message, PollenError } from '../sdk/index.js';
import { checkLikeCurrent, data, type FloatData, mapArrays } from './elementwise.js';
import type { FedAvgOptions } from './fedavg.js';
import { numberOption } from './options.js';
import { StatefulFedAvg } from './stateful.js';
import { ownStrategy, type TrainAggregate } from './strategy.js';

export interface QFedAvgOptions extends FedAvgOptions {
  /** The clients' learning rate: the Lipschitz constant is estimated as L = 1 / clientLearningRate. Required. */
  clientLearningRate: number;
  /** Fairness q >= 0 (default 0.1; 0 is the unweighted average of the replies). */
  q?: number;
  /** The metric in each reply that holds its training loss (default `train_loss`). */
  trainLossKey?: string;
}

/**
 * With x the global arrays, and per reply k its arrays w_k and loss F_k (ε = 1e-10):
 * Δ_k = (F_k + ε)^q · L·(x − w_k), h_k = q·(F_k + ε)^(q−1)·‖L·(x − w_k)‖² + L·(F_k + ε)^q, and
 * x ← x − Σ_k Δ_k / Σ_k h_k. `configureTrain` records x, as in Flower; it is the state (`current`).
 *
 * @example
 * ```ts
 * const result = await new QFedAvg({ clientLearningRate: 0.1, q: 0.2 }).start({ grid, initialArrays, numRounds: 10 });
 * // ClientApp: reply with MetricRecord({ 'num-examples': n, train_loss: loss })
 * ```
 */
export class QFedAvg extends StatefulFedAvg {
  readonly clientLearningRate: number;
  readonly q: number;
  readonly trainLossKey: string;

  constructor(options: QFedAvgOptions) {
    super(options, []);
    this.clientLearningRate = numberOption(
      'clientLearningRate',
      options?.clientLearningRate,
      Number.NaN,
      (v) => v > 0,
      'a number > 0',
    );
    this.q = numberOption('q', options.q, 0.1, (v) => v >= 0, 'a number >= 0');
    this.trainLossKey = options.trainLossKey ?? 'train_loss';
  }

  /** The q-FedAvg step on the finite replies (see the class); metrics averaged by `num-examples`. */
  override aggregateTrain(_serverRound: number, replies: Iterable<Message>): TrainAggregate {
    const { kept, failures } = this.finiteTrainReplies(replies);
    const x = this.current();
    const L = 1 / this.clientLearningRate;
    const eps = 1e-10;
    const weights = kept.arrays.map((w, k) => {
      checkLikeCurrent(x, w, `Reply ${k} (node ${kept.contents[k]?.nodeId})`);
      const loss = kept.metrics[k]?.get(this.trainLossKey);
      if (typeof loss !== 'number' || !Number.isFinite(loss) || loss < 0)
        throw new PollenError(
          'INVALID_ARGUMENT',
          `Reply ${k} (node ${kept.contents[k]?.nodeId}) reports ${this.trainLossKey} = ${JSON.stringify(loss)}: it must be a number >= 0`,
          { hint: `Every reply's MetricRecord carries the training loss as "${this.trainLossKey}".` },
        );
      let norm = 0;
      for (const [name] of x) {
        const a = data(x, name);
        const b = data(w, name) as FloatData;
        for (let i = 0; i < a.length; i++) {
          const g = L * ((a[i] as number) - (b[i] as number));
          norm += g * g;
        }
      }
      const lq = (loss + eps) ** this.q;
      return { lq, h: this.q * (loss + eps) ** (this.q - 1) * norm + L * lq };
    });
    const sumH = weights.reduce((s, { h }) => s + h, 0);
    const arrays = mapArrays(x, (name, out) => {
      const a = data(x, name);
      const ws = kept.arrays.map((w) => data(w, name));
      for (let i = 0; i < out.length; i++) {
        let delta = 0;
        for (let k = 0; k < ws.length; k++)
          delta += (weights[k]?.lq as number) * L * ((a[i] as number) - ((ws[k] as FloatData)[i] as number));
        out[i] = (a[i] as number) - delta / sumH;
      }
    });
    return this.trainAggregate(kept, arrays, failures);
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(QFedAvg);
