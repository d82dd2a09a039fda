/**
 * A node's resources (`--resources cpu=N,gpu=M`) and how they are given to runs: each run's app
 * process gets its own GPUs (`CUDA_VISIBLE_DEVICES`, `POLLEN_GPUS`) for as long as the run is
 * open on this node, and every app the CPU count (`POLLEN_CPUS`, `OMP_NUM_THREADS`).
 *
 * A run that asks for more GPUs than are free is refused at once with GPU_UNAVAILABLE (its
 * instructions get that error reply), rather than kept waiting: the ServerApp hears it within the
 * round, while a waiting run would hold its instructions past their timeouts unseen.
 */
import { PollenError } from '../errors.js';

export interface NodeResources {
  /** CPUs an app may use (threads of numerical libraries); undefined: not declared. */
  cpu?: number;
  /** GPU ids of this node (labels passed to CUDA_VISIBLE_DEVICES). */
  gpus: number[];
}

/** The run config key with which a run asks for GPUs on each node. */
export const GPUS_PER_RUN = 'gpus-per-run';

function invalid(message: string): PollenError {
  return new PollenError('RESOURCES_INVALID', message);
}

const count = (v: string, what: string): number => {
  if (!/^\d+$/.test(v)) throw invalid(`${what} must be a whole number, not "${v}"`);
  return Number(v);
};

/**
 * `cpu=8,gpu=2`: 8 CPUs, GPUs 0 and 1. Several values list ids: `gpu=0,2` is GPUs 0 and 2;
 * `gpu-ids=3` names one (a lone `gpu=N` is a count).
 */
export function parseResources(text: string | undefined): NodeResources {
  const out: NodeResources = { gpus: [] };
  if (text === undefined || text.trim() === '') return out;
  let key: string | undefined;
  const seen = new Set<string>();
  const gpuValues: string[] = [];
  for (const part of text.split(',').map((s) => s.trim())) {
    const eq = part.indexOf('=');
    if (eq >= 0) {
      key = part.slice(0, eq).trim();
      if (key !== 'cpu' && key !== 'gpu' && key !== 'gpu-ids')
        throw invalid(`Unknown resource "${key}" in "${text}" (cpu, gpu, gpu-ids)`);
      if (seen.has(key) || (key !== 'cpu' && seen.has(key === 'gpu' ? 'gpu-ids' : 'gpu')))
        throw invalid(`The GPUs or CPUs are given twice in "${text}"`);
      seen.add(key);
    } else if (key === undefined || key === 'cpu') throw invalid(`"${part}" in "${text}" is not name=value`);
    const value = eq >= 0 ? part.slice(eq + 1).trim() : part;
    if (key === 'cpu') {
      out.cpu = count(value, 'cpu');
      if (out.cpu < 1) throw invalid('cpu must be 1 or more');
    } else gpuValues.push(value);
  }
  if (gpuValues.length === 1 && !seen.has('gpu-ids')) {
    // gpu=M: M GPUs, ids 0 … M-1.
    out.gpus = Array.from({ length: count(gpuValues[0] as string, 'gpu') }, (_, i) => i);
  } else if (gpuValues.length > 0) {
    out.gpus = gpuValues.map((v) => count(v, 'a GPU id'));
    if (new Set(out.gpus).size !== out.gpus.length) throw invalid(`A GPU id is listed twice in "${text}"`);
  }
  return out;
}

/** GPUs given to runs: exclusive unless shared, released when the run's slot closes. */
export class GpuAllocator {
  readonly #held = new Map<string, number[]>();

  constructor(
    readonly gpus: readonly number[],
    readonly share = false,
  ) {}

  /** How many runs hold each GPU (metrics: no run is named). */
  holders(): Map<number, number> {
    const use = new Map(this.gpus.map((g) => [g, 0]));
    for (const ids of this.#held.values()) for (const g of ids) use.set(g, (use.get(g) ?? 0) + 1);
    return use;
  }

  /** How many GPUs a run gets: its `gpus-per-run`, else 1 on a node with GPUs, 0 without. */
  wanted(runConfig: Readonly<Record<string, unknown>>): number {
    const asked = runConfig[GPUS_PER_RUN];
    if (asked === undefined) return this.gpus.length > 0 ? 1 : 0;
    if (typeof asked !== 'number' || !Number.isSafeInteger(asked) || asked < 0)
      throw invalid(
        `The run config ${GPUS_PER_RUN} must be a whole number >= 0, not ${JSON.stringify(asked)}`,
      );
    return asked;
  }

  /** The run's GPUs (the same on every call until released); GPU_UNAVAILABLE when too few are free. */
  acquire(runId: string, wanted: number): number[] {
    const held = this.#held.get(runId);
    if (held) return held;
    if (wanted > this.gpus.length)
      throw new PollenError(
        'GPU_UNAVAILABLE',
        `The run asks for ${wanted} GPU${wanted === 1 ? '' : 's'} per node (${GPUS_PER_RUN}); this node has ${this.gpus.length}`,
        {
          hint: `Ask for at most ${this.gpus.length} (--run-config ${GPUS_PER_RUN}=${this.gpus.length}), or run on nodes with more GPUs.`,
        },
      );
    const use = this.holders();
    // Shared: the least used first (ties by id); exclusive: only unused ones.
    const order = [...this.gpus].sort((a, b) => (use.get(a) ?? 0) - (use.get(b) ?? 0) || a - b);
    const free = this.share ? order : order.filter((g) => use.get(g) === 0);
    if (free.length < wanted)
      throw new PollenError(
        'GPU_UNAVAILABLE',
        `The run asks for ${wanted} GPU${wanted === 1 ? '' : 's'}; ${free.length} of this node's ${this.gpus.length} ${free.length === 1 ? 'is' : 'are'} free (the others run other runs)`,
      );
    const given = free.slice(0, wanted).sort((a, b) => a - b);
    this.#held.set(runId, given);
    return given;
  }

  release(runId: string): void {
    this.#held.delete(runId);
  }
}
