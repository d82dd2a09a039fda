import { describe, expect, it } from 'vitest';
import { resourceVariables } from '../apps/app-env.js';
import { GpuAllocator, parseResources } from './resources.js';

describe('node resources (--resources)', () => {
  it.each([
    ['cpu=8,gpu=2', { cpu: 8, gpus: [0, 1] }],
    ['gpu=0,2', { gpus: [0, 2] }],
    ['cpu=4, gpu=1,3,5', { cpu: 4, gpus: [1, 3, 5] }],
    ['gpu-ids=3', { gpus: [3] }],
    ['gpu=0', { gpus: [] }],
    ['', { gpus: [] }],
  ])('reads %j', (text, want) => {
    expect(parseResources(text)).toEqual(want);
  });

  it.each([
    ['cpu=0', 'cpu must be 1 or more'],
    ['cpu=two', 'cpu must be a whole number, not "two"'],
    ['ram=4', 'Unknown resource "ram"'],
    ['gpu=1,1', 'listed twice'],
    ['gpu=2,gpu-ids=3', 'given twice'],
    ['8', 'is not name=value'],
    ['cpu=2,3', 'is not name=value'],
  ])('refuses %j with RESOURCES_INVALID', (text, message) => {
    expect(() => parseResources(text)).toThrow(
      expect.objectContaining({ code: 'RESOURCES_INVALID', message: expect.stringContaining(message) }),
    );
  });

  it('gives an app process its GPUs and CPUs as variables; no GPU hides them all', () => {
    expect(resourceVariables(4, [0, 2])).toEqual({
      POLLEN_GPUS: '0,2',
      CUDA_VISIBLE_DEVICES: '0,2',
      POLLEN_CPUS: '4',
      OMP_NUM_THREADS: '4',
    });
    expect(resourceVariables(undefined, [])).toEqual({ POLLEN_GPUS: '', CUDA_VISIBLE_DEVICES: '' });
  });
});

describe('GPU allocation to runs', () => {
  it('never gives one GPU to two runs at once, and frees them when a run ends', async () => {
    const gpus = new GpuAllocator([0, 1]);
    // Two runs opening at the same moment.
    const [a, b] = await Promise.all(['run-a', 'run-b'].map(async (r) => gpus.acquire(r, 1)));
    expect(new Set([...(a ?? []), ...(b ?? [])])).toEqual(new Set([0, 1]));
    expect(gpus.acquire('run-a', 1)).toEqual(a); // the same GPUs while the run is open
    expect(() => gpus.acquire('run-c', 1)).toThrow(
      expect.objectContaining({
        code: 'GPU_UNAVAILABLE',
        message: expect.stringContaining("0 of this node's 2 are free"),
      }),
    );
    gpus.release('run-a');
    expect(gpus.acquire('run-c', 1)).toEqual(a);
  });

  it('refuses a run asking for more GPUs than the node has, saying how many there are', () => {
    const err = (() => {
      try {
        new GpuAllocator([0, 1]).acquire('r', 3);
      } catch (e) {
        return e as { code: string; message: string; hint: string };
      }
    })();
    expect(err).toMatchObject({
      code: 'GPU_UNAVAILABLE',
      message: expect.stringContaining('this node has 2'),
    });
    expect(err?.hint).toContain('gpus-per-run=2');
  });

  it('shares GPUs with --share-gpus, the least used first', () => {
    const gpus = new GpuAllocator([0, 1], true);
    expect(gpus.acquire('a', 1)).toEqual([0]);
    expect(gpus.acquire('b', 1)).toEqual([1]);
    expect(gpus.acquire('c', 2)).toEqual([0, 1]);
  });

  it('asks the run config gpus-per-run: default 1 with GPUs, 0 without', () => {
    expect(new GpuAllocator([0]).wanted({})).toBe(1);
    expect(new GpuAllocator([]).wanted({})).toBe(0);
    expect(new GpuAllocator([0, 1]).wanted({ 'gpus-per-run': 2 })).toBe(2);
    expect(() => new GpuAllocator([0]).wanted({ 'gpus-per-run': 'all' })).toThrow(
      /gpus-per-run must be a whole number/,
    );
  });
});
