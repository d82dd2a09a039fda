/**
 * examples/pytorch-mnist on its own: its pytest suite (data conversion, the deterministic split,
 * the seeded CNN learning the digits) with the test Python, which has torch.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PYTHON } from './support/python.js';

const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'pytorch-mnist');

describe('examples/pytorch-mnist', () => {
  it('passes its pytest suite: the digits converted, split without overlap, learned in one epoch', () => {
    const r = spawnSync(PYTHON, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests'], {
      cwd: EXAMPLE,
      encoding: 'utf8',
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', OMP_NUM_THREADS: '1' },
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\b7 passed\b/);
  }, 120_000);
});
