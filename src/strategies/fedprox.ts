/**
 * FedProx (Li et al., 2020): FedAvg's loop and aggregation, plus a proximal term
 * (mu / 2) · ||w − w_global||² that each client adds to its local loss so its model does not
 * drift far from the global one. The server only sends `proximal-mu` in the train config;
 * `proximalTerm` computes the term and its gradient on the client.
 */
import { type ArrayRecord, ConfigRecord, type Message, PollenError } from '../sdk/index.js';
import { FedAvg, type FedAvgConfig, type FedAvgOptions, fedAvgConfig } from './fedavg.js';
import { ownStrategy } from './strategy.js';

export interface FedProxConfig extends FedAvgConfig {
  /** Weight of the proximal term, >= 0 (0 is FedAvg). */
  proximalMu: number;
}

/** Merge with the FedAvg defaults and validate; proximalMu is required. */
export function fedProxConfig(config: Partial<FedAvgConfig> & { proximalMu: number }): FedProxConfig {
  const mu = config.proximalMu;
  if (typeof mu !== 'number' || !Number.isFinite(mu) || mu < 0) {
    throw new PollenError('INVALID_ARGUMENT', `proximalMu must be finite and >= 0, got ${String(mu)}`);
  }
  return { ...fedAvgConfig(config), proximalMu: mu };
}

/** FedAvg's options plus the proximal term's weight. */
export interface FedProxOptions extends FedAvgOptions {
  /** Weight of the proximal term, >= 0 (0 is FedAvg); sent as `proximal-mu`. */
  proximalMu: number;
}

/**
 * FedAvg whose train messages also carry `proximal-mu` (Flower's `FedProx`). The ClientApp
 * adds the proximal term to its loss, e.g. with `proximalTerm`.
 *
 * @example
 * ```ts
 * const result = await new FedProx({ proximalMu: 0.1 }).start({ grid, initialArrays, numRounds: 5 });
 * // ClientApp: const mu = message.content.getConfigRecord('config')?.get('proximal-mu');
 * ```
 */
export class FedProx extends FedAvg {
  readonly proximalMu: number;

  constructor(options: FedProxOptions) {
    super(options);
    this.proximalMu = fedProxConfig({ proximalMu: options.proximalMu }).proximalMu;
  }

  /** FedAvg's train messages, with `proximal-mu` added to (a copy of) the config. */
  override configureTrain(
    serverRound: number,
    arrays: ArrayRecord,
    config: ConfigRecord,
    nodeIds: readonly string[],
  ): Message[] {
    const withMu = new ConfigRecord(config).set('proximal-mu', this.proximalMu);
    return super.configureTrain(serverRound, arrays, withMu, nodeIds);
  }
}

export type Params = Float32Array[] | Record<string, Float32Array>;

export interface ProximalTerm<T extends Params> {
  /** (mu / 2) · Σ (w − w_global)², computed in float64. */
  value: number;
  /** mu · (w − w_global), shaped like `local`. */
  gradient: T;
}

/**
 * The proximal term and its gradient with respect to the local weights. `local` and `global`
 * are both arrays of layers or both records with the same names and lengths.
 *
 * @example
 * ```ts
 * // In a FedProx ClientApp's training step, after the loss gradient `grads` of the local model:
 * const { value, gradient } = proximalTerm(localWeights, globalWeights, mu);
 * const loss = dataLoss + value;
 * for (const name of Object.keys(grads)) for (let i = 0; i < grads[name].length; i++) grads[name][i] += gradient[name][i];
 * ```
 */
export function proximalTerm<T extends Params>(local: T, global: T, mu: number): ProximalTerm<T> {
  if (typeof mu !== 'number' || !Number.isFinite(mu) || mu < 0) {
    throw new PollenError('INVALID_ARGUMENT', `mu must be finite and >= 0, got ${String(mu)}`);
  }
  const names = Object.keys(local);
  const g = global as Record<string, Float32Array>;
  const l = local as Record<string, Float32Array>;
  if (Array.isArray(local) !== Array.isArray(global) || Object.keys(global).length !== names.length) {
    throw new PollenError('INVALID_ARGUMENT', 'local and global parameters do not have the same layers');
  }
  let sq = 0;
  const grads: Record<string, Float32Array> = {};
  for (const name of names) {
    const w = l[name] as Float32Array;
    const w0 = g[name];
    if (w0 === undefined || w0.length !== w.length) {
      throw new PollenError('INVALID_ARGUMENT', `Layer ${name} differs between local and global parameters`);
    }
    const grad = new Float32Array(w.length);
    for (let i = 0; i < w.length; i++) {
      const d = (w[i] as number) - (w0[i] as number);
      sq += d * d;
      grad[i] = mu * d;
    }
    grads[name] = grad;
  }
  const gradient = (Array.isArray(local) ? names.map((n) => grads[n] as Float32Array) : grads) as T;
  return { value: (mu / 2) * sq, gradient };
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(FedProx);
