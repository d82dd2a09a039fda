import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { isPollenError } from '../../errors.js';
import { DEFAULT_LIMITS } from '../../superlink/quotas.js';
import { optionsFromEnvironment } from '../command.js';
import { addLimitOptions, LIMIT_FLAGS, limitsFrom } from './limits.js';

const MiB = 1024 * 1024;

function parse(argv: string[], env: NodeJS.ProcessEnv = {}): Record<string, unknown> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const cmd = addLimitOptions(new Command('superlink').exitOverride());
    cmd.parse(argv, { from: 'user' });
    return cmd.opts();
  } finally {
    for (const k of Object.keys(env)) if (!(k in saved)) delete process.env[k];
  }
}

describe('SuperLink limit flags', () => {
  it('default to DEFAULT_LIMITS, take flags in MiB or counts, and mirror them in the environment', () => {
    expect(limitsFrom(parse([]))).toEqual(DEFAULT_LIMITS);
    const limits = limitsFrom(
      parse(
        ['--node-chunk-quota', '64', '--node-rate', '0', '--node-burst', '10', '--artefact-max-size', '8'],
        {
          POLLEN_CHUNK_DISK_BUDGET: '512',
          POLLEN_NODE_REPLY_QUEUE_MIB: '0.5',
          POLLEN_RUN_ARTEFACT_BUDGET: '16',
        },
      ),
    );
    expect(limits).toEqual({
      ...DEFAULT_LIMITS,
      nodeChunkQuotaBytes: 64 * MiB,
      chunkDiskBudgetBytes: 512 * MiB,
      nodeReplyQueueBytes: MiB / 2,
      nodeRatePerSecond: 0,
      nodeBurst: 10,
      artefactMaxBytes: 8 * MiB,
      runArtefactBytes: 16 * MiB,
    });
    // The kit path (`pollen start SERVER_KIT`) reads the same variables through the same options.
    const saved = process.env;
    process.env = { ...saved, POLLEN_NODE_REPLY_QUEUE: '7', POLLEN_NODE_RATE: '50' };
    try {
      expect(limitsFrom(optionsFromEnvironment(addLimitOptions))).toEqual({
        ...DEFAULT_LIMITS,
        nodeReplyQueue: 7,
        nodeRatePerSecond: 50,
      });
    } finally {
      process.env = saved;
    }
    expect(new Set(LIMIT_FLAGS.map((f) => f.limit))).toEqual(new Set(Object.keys(DEFAULT_LIMITS)));
  });

  it('refuses values out of range with INVALID_ARGUMENT naming the flag and its variable', () => {
    for (const [key, value] of [
      ['nodeChunkQuota', '0'],
      ['nodeBurst', '2.5'],
      ['nodeRate', '-1'],
      ['nodeReplyQueue', 'many'],
      ['artefactMaxSize', '0'],
      ['runArtefactBudget', '-5'],
    ]) {
      try {
        limitsFrom({ [key!]: value });
        throw new Error(`${key}=${value} was accepted`);
      } catch (e) {
        expect(isPollenError(e) && e.code).toBe('INVALID_ARGUMENT');
        expect((e as Error).message).toMatch(/^--[a-z-]+ \(POLLEN_[A-Z_]+\) takes/);
      }
    }
  });
});
