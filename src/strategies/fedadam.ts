/** FedAdam (Reddi et al., 2021): FedOpt with Adam's second moment and bias-corrected step. */
import { FedOpt, type FedOptOptions } from './fedopt.js';
import { ownStrategy } from './strategy.js';

/**
 * FedOpt with v ← β₂·v + (1 − β₂)·Δ² and step η·√(1 − β₂^(t+1)) / (1 − β₁^(t+1)) in round t
 * (Flower's message-API FedAdam). Defaults: η = 0.1, η_l = 0.1, β₁ = 0.9, β₂ = 0.99, τ = 0.001.
 *
 * @example
 * ```ts
 * const result = await new FedAdam({ eta: 0.01 }).start({ grid, initialArrays, numRounds: 10 });
 * ```
 */
export class FedAdam extends FedOpt {
  constructor(options: FedOptOptions = {}) {
    super(options, { eta: 0.1, etaL: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
  }

  protected override secondMoment(v: number, delta: number): number {
    return this.beta2 * v + (1 - this.beta2) * delta * delta;
  }

  protected override stepSize(serverRound: number): number {
    return (
      (this.eta * Math.sqrt(1 - this.beta2 ** (serverRound + 1))) / (1 - this.beta1 ** (serverRound + 1))
    );
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(FedAdam);
