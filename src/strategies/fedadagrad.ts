/** FedAdagrad (Reddi et al., 2021): FedOpt with Adagrad's accumulated second moment. */
import { FedOpt, type FedOptOptions } from './fedopt.js';
import { ownStrategy } from './strategy.js';

/** FedAdagrad's options: FedOpt's without the moment decays (β₁ = β₂ = 0, as in Flower). */
export type FedAdagradOptions = Omit<FedOptOptions, 'beta1' | 'beta2'>;

/**
 * FedOpt with m = Δ, v ← v + Δ² and step η (Flower's message-API FedAdagrad). Defaults:
 * η = 0.1, η_l = 0.1, τ = 0.001.
 *
 * @example
 * ```ts
 * const result = await new FedAdagrad({ eta: 0.1 }).start({ grid, initialArrays, numRounds: 10 });
 * ```
 */
export class FedAdagrad extends FedOpt {
  constructor(options: FedAdagradOptions = {}) {
    super({ ...options, beta1: 0, beta2: 0 }, { eta: 0.1, etaL: 0.1, beta1: 0, beta2: 0, tau: 1e-3 });
  }

  protected override secondMoment(v: number, delta: number): number {
    return v + delta * delta;
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(FedAdagrad);
