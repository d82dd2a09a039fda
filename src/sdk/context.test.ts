import { describe, expect, it } from 'vitest';
import { createContext, resourcesFromEnv } from './context.js';

describe('Context resources', () => {
  it('reads the GPUs and CPUs the node gives the process, as the Python Context does', () => {
    expect(resourcesFromEnv({ POLLEN_GPUS: '0,2', POLLEN_CPUS: '8' })).toEqual({ cpu: 8, gpus: [0, 2] });
    // Empty POLLEN_GPUS: every GPU hidden; no POLLEN_CPUS: the node declares none.
    expect(resourcesFromEnv({ POLLEN_GPUS: '' })).toEqual({ cpu: null, gpus: [] });
    expect(resourcesFromEnv({})).toEqual({ cpu: null, gpus: [] });
  });

  it('refuses a malformed variable with RESOURCES_INVALID, naming it', () => {
    expect(() => resourcesFromEnv({ POLLEN_GPUS: '0,x' })).toThrow(
      expect.objectContaining({ code: 'RESOURCES_INVALID', message: expect.stringContaining('POLLEN_GPUS') }),
    );
    expect(() => resourcesFromEnv({ POLLEN_CPUS: '-1' })).toThrow(
      expect.objectContaining({ code: 'RESOURCES_INVALID', message: expect.stringContaining('"-1"') }),
    );
  });

  it('gives context.gpus and context.resources; none by default, as in a simulation', () => {
    const context = createContext({ runId: 'r', nodeId: '1', resources: { cpu: 4, gpus: [1] } });
    expect(context.gpus).toEqual([1]);
    expect(context.resources).toEqual({ cpu: 4, gpus: [1] });
    expect(Object.isFrozen(context.gpus) && Object.isFrozen(context.resources)).toBe(true);
    const none = createContext({ runId: 'r', nodeId: '1' });
    expect(none.gpus).toEqual([]);
    expect(none.resources).toEqual({ cpu: null, gpus: [] });
  });
});
