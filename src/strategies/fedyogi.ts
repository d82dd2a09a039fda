/** FedYogi (Reddi et al., 2021): FedOpt with Yogi's sign-controlled second moment. */
import { FedOpt, type FedOptOptions } from './fedopt.js';
import { ownStrategy } from './strategy.js';

/**
 * FedOpt with v ← v − (1 − β₂)·Δ²·sign(v − Δ²) and step η (Flower's message-API FedYogi).
 * Defaults: η = 0.01, η_l = 0.0316, β₁ = 0.9, β₂ = 0.99, τ = 0.001.
 *
 * @example
 * ```ts
 * const result = await new FedYogi({ eta: 0.01, tau: 1e-3 }).start({ grid, initialArrays, numRounds: 10 });
 * ```
 */
export class FedYogi extends FedOpt {
  constructor(options: FedOptOptions = {}) {
    super(options, { eta: 1e-2, etaL: 0.0316, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
  }

  protected override secondMoment(v: number, delta: number): number {
    const d2 = delta * delta;
    return v - (1 - this.beta2) * d2 * Math.sign(v - d2);
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(FedYogi);
