/**
 * FedOpt (Reddi et al., 2021, "Adaptive Federated Optimization"): the round's weighted average
 * gives a pseudo-gradient Δ = avg − x, and the server applies an adaptive optimizer step to the
 * global arrays x with it. FedAdam, FedYogi and FedAdagrad differ only in the second moment v
 * and the step size; this module holds what they share, including their state (x, m, v).
 */
import { ArrayRecord, type Message } from '../sdk/index.js';
import { checkLikeCurrent, data, type FloatData, mapArrays, zerosLike } from './elementwise.js';
import type { FedAvgOptions } from './fedavg.js';
import { numberOption } from './options.js';
import { StatefulFedAvg } from './stateful.js';
import type { TrainAggregate } from './strategy.js';

/** The server optimizer's options (Flower's `eta`, `eta_l`, `beta_1`, `beta_2`, `tau`). */
export interface FedOptOptions extends FedAvgOptions {
  /** Server-side learning rate η. */
  eta?: number;
  /** Client-side learning rate η_l: kept for the ClientApp's config, not used by the server step. */
  etaL?: number;
  /** First-moment (momentum) decay β₁, in [0, 1). */
  beta1?: number;
  /** Second-moment decay β₂, in [0, 1). */
  beta2?: number;
  /** Adaptivity τ > 0, added to √v. */
  tau?: number;
}

type FedOptDefaults = Required<Pick<FedOptOptions, 'eta' | 'etaL' | 'beta1' | 'beta2' | 'tau'>>;

const unit = (v: number) => v >= 0 && v < 1;

/**
 * The shared step of FedAdam, FedYogi and FedAdagrad. `configureTrain` records the global arrays
 * x it sends (as Flower's FedOpt does); `aggregateTrain` averages the replies as FedAvg, then per
 * element: Δ = avg − x, m ← β₁·m + (1 − β₁)·Δ, v ← secondMoment(v, Δ),
 * x ← x + stepSize(round) · m / (√v + τ). m and v start at zero and are kept in the arrays'
 * dtype; the arithmetic is float64. Its state (`saveState`): `current` (x), `m` and `v`.
 *
 * @example
 * ```ts
 * // A server optimizer of your own: RMSProp-like, v ← β₂·v + (1 − β₂)·Δ².
 * class FedRms extends FedOpt {
 *   constructor(options: FedOptOptions = {}) {
 *     super(options, { eta: 0.01, etaL: 0.1, beta1: 0, beta2: 0.9, tau: 1e-3 });
 *   }
 *   protected override secondMoment(v: number, delta: number): number {
 *     return this.beta2 * v + (1 - this.beta2) * delta * delta;
 *   }
 * }
 * ```
 */
export abstract class FedOpt extends StatefulFedAvg {
  readonly eta: number;
  readonly etaL: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly tau: number;

  protected constructor(options: FedOptOptions, defaults: FedOptDefaults) {
    super(options, ['m', 'v']);
    this.eta = numberOption('eta', options.eta, defaults.eta, (v) => v > 0, 'a number > 0');
    this.etaL = numberOption('etaL', options.etaL, defaults.etaL, (v) => v > 0, 'a number > 0');
    this.beta1 = numberOption('beta1', options.beta1, defaults.beta1, unit, 'in [0, 1)');
    this.beta2 = numberOption('beta2', options.beta2, defaults.beta2, unit, 'in [0, 1)');
    this.tau = numberOption('tau', options.tau, defaults.tau, (v) => v > 0, 'a number > 0');
  }

  /** v after a round whose pseudo-gradient element is `delta`. */
  protected abstract secondMoment(v: number, delta: number): number;

  /** The step size of round `serverRound` (η; FedAdam corrects it for the moments' bias). */
  protected stepSize(_serverRound: number): number {
    return this.eta;
  }

  /**
   * The optimizer step on the replies' weighted average (see the class). STRATEGY_STATE_MISSING
   * before configureTrain or loadState; INVALID_ARGUMENT when the replies' arrays are not shaped
   * like the global ones.
   */
  override aggregateTrain(serverRound: number, replies: Iterable<Message>): TrainAggregate {
    const avg = super.aggregateTrain(serverRound, replies);
    const x = this.current();
    checkLikeCurrent(x, avg.arrays, "The replies' average");
    const eta = this.stepSize(serverRound);
    const m = new ArrayRecord();
    const v = new ArrayRecord();
    const arrays = mapArrays(x, (name, out) => {
      const entry = x.get(name)!;
      const xs = data(x, name);
      const a = data(avg.arrays, name);
      const m0 = this.state.get('m')?.get(name)?.data as FloatData | undefined;
      const v0 = this.state.get('v')?.get(name)?.data as FloatData | undefined;
      const mo = zerosLike(entry);
      const vo = zerosLike(entry);
      for (let i = 0; i < out.length; i++) {
        const d = (a[i] as number) - (xs[i] as number);
        const mi = this.beta1 * ((m0?.[i] as number | undefined) ?? 0) + (1 - this.beta1) * d;
        const vi = this.secondMoment((v0?.[i] as number | undefined) ?? 0, d);
        mo[i] = mi;
        vo[i] = vi;
        out[i] = (xs[i] as number) + (eta * mi) / (Math.sqrt(vi) + this.tau);
      }
      m.set(name, { dtype: entry.dtype, shape: entry.shape, data: mo });
      v.set(name, { dtype: entry.dtype, shape: entry.shape, data: vo });
    });
    this.state.set('m', m);
    this.state.set('v', v);
    return { ...avg, arrays };
  }
}
