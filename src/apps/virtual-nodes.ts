/**
 * The virtual nodes of a simulation (`pollen simulate`): how many there may be, their ids and
 * their node config. Kept apart from simulation.ts so the CLI can name the limits without loading
 * the bundler.
 */
import { PollenError } from '../errors.js';
import type { UserConfigValue } from '../sdk/context.js';

/** Most virtual nodes: each keeps its Context and state in the one process. */
export const MAX_VIRTUAL_NODES = 1000;

/** The node config keys a simulation sets on every virtual node, as a site operator would. */
export const PARTITION_KEYS = ['partition-id', 'num-partitions'] as const;

type Config = Record<string, UserConfigValue>;

export interface VirtualNode {
  nodeId: string;
  nodeConfig: Config;
}

/** Virtual node p's id: 16 characters like a real node id, sorting in partition order. */
export function virtualNodeId(partitionId: number): string {
  return String(partitionId + 1).padStart(16, '0');
}

function invalid(message: string, hint: string): PollenError {
  return new PollenError('INVALID_ARGUMENT', message, { hint });
}

/**
 * `count` virtual nodes; node p gets `extra` with `partition-id` p and `num-partitions` count.
 * INVALID_ARGUMENT for a count out of range or an `extra` that sets the PARTITION_KEYS.
 */
export function virtualNodes(count: number, extra: Config = {}): VirtualNode[] {
  if (!Number.isSafeInteger(count) || count < 1 || count > MAX_VIRTUAL_NODES)
    throw invalid(
      `A simulation runs 1 to ${MAX_VIRTUAL_NODES} virtual nodes, not ${count}`,
      'Give --nodes a whole number in that range.',
    );
  const taken = PARTITION_KEYS.filter((k) => Object.hasOwn(extra, k));
  if (taken.length > 0)
    throw invalid(
      `The simulation sets ${taken.join(' and ')} of each virtual node itself`,
      'Leave them out of --node-config: virtual node p of N gets partition-id p and num-partitions N.',
    );
  return Array.from({ length: count }, (_, p) => ({
    nodeId: virtualNodeId(p),
    nodeConfig: { ...extra, 'partition-id': p, 'num-partitions': count },
  }));
}
