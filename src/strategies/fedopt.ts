/**
 * FedOpt (Reddi et al., 2021, "Adaptive Federated Optimization"): the round's weighted average
 * gives a pseudo-gradient Δ = avg − x, and the server applies an adaptive optimizer step to the
 * global arrays x with it. FedAdam, FedYogi and FedAdagrad differ only in the second moment v
 * and the step size; this module holds what they share, including their state (x, m, v).
 */
import { ArrayRecord, type ConfigRecord, type Message, RecordDict } from '../sdk/index.js';
import {
  checkLikeCurrent,
  data,
  type FloatData,
  mapArrays,
  requireCurrent,
  stateArrays,
  zerosLike,
} from './elementwise.js';
import { FedAvg, type FedAvgOptions } from './fedavg.js';
import { numberOption } from './options.js';
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
 * dtype; the arithmetic is float64.
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
export abstract class FedOpt extends FedAvg {
  readonly eta: number;
  readonly etaL: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly tau: number;
  #current: ArrayRecord | undefined;
  #m: ArrayRecord | undefined;
  #v: ArrayRecord | undefined;

  protected constructor(options: FedOptOptions, defaults: FedOptDefaults) {
    super(options);
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

  /** FedAvg's messages; the arrays sent are the x the next aggregation updates. */
  override configureTrain(
    serverRound: number,
    arrays: ArrayRecord,
    config: ConfigRecord,
    nodeIds: readonly string[],
  ): Message[] {
    this.#current = arrays;
    return super.configureTrain(serverRound, arrays, config, nodeIds);
  }

  /**
   * The optimizer step on the replies' weighted average (see the class). STRATEGY_STATE_MISSING
   * before configureTrain or loadState; INVALID_ARGUMENT when the replies' arrays are not shaped
   * like the global ones.
   */
  override aggregateTrain(serverRound: number, replies: Iterable<Message>): TrainAggregate {
    const avg = super.aggregateTrain(serverRound, replies);
    const x = requireCurrent(this.#current, this.constructor.name);
    checkLikeCurrent(x, avg.arrays, "The replies' average");
    const eta = this.stepSize(serverRound);
    const m = new ArrayRecord();
    const v = new ArrayRecord();
    const arrays = mapArrays(x, (name, out) => {
      const entry = x.get(name)!;
      const xs = data(x, name);
      const a = data(avg.arrays, name);
      const m0 = this.#m?.get(name)?.data as FloatData | undefined;
      const v0 = this.#v?.get(name)?.data as FloatData | undefined;
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
    this.#m = m;
    this.#v = v;
    return { ...avg, arrays };
  }

  /** `current` (the last x sent), `m` and `v` (the moments), each when set. */
  override saveState(): RecordDict {
    const state = new RecordDict();
    for (const [name, record] of [
      ['current', this.#current],
      ['m', this.#m],
      ['v', this.#v],
    ] as const)
      if (record !== undefined) state.set(name, record.clone());
    return state;
  }

  override loadState(state: RecordDict): void {
    this.#current = stateArrays(state, 'current');
    this.#m = stateArrays(state, 'm');
    this.#v = stateArrays(state, 'v');
  }
}
