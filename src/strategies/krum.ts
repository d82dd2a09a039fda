/** Krum (Blanchard et al., 2017): MultiKrum keeping one reply. */
import type { FedAvgOptions } from './fedavg.js';
import { MultiKrum } from './multikrum.js';
import { ownStrategy } from './strategy.js';

export interface KrumOptions extends FedAvgOptions {
  /** f, the number of malicious nodes to withstand (default 0). */
  numMaliciousNodes?: number;
}

/**
 * The new global arrays are the one reply whose n − f − 2 nearest neighbours are closest (the
 * smallest sum of squared L2 distances); its metrics are the round's.
 *
 * @example
 * ```ts
 * const result = await new Krum({ numMaliciousNodes: 1 }).start({ grid, initialArrays, numRounds: 10 });
 * ```
 */
export class Krum extends MultiKrum {
  constructor(options: KrumOptions = {}) {
    super({ ...options, numNodesToSelect: 1 });
  }
}

// Keeps no reply array past its round: Strategy.start may read its replies in the kernel's memory.
ownStrategy(Krum);
