/**
 * examples/pytorch-mnist in one process: its pytest suite (data conversion, the deterministic
 * split, the seeded CNN learning the digits, and its ClientApp and ServerApp together through the
 * SDK's in-memory grid) with the test Python, which has torch.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PYTHON } from './support/python.js';

const ROOT = join(import.meta.dirname, '..');
const EXAMPLE = join(ROOT, 'examples', 'pytorch-mnist');

describe('examples/pytorch-mnist', () => {
  it('passes its pytest suite: the digits converted and split without overlap; two nodes reach 90% in two rounds', () => {
    const r = spawnSync(PYTHON, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests'], {
      cwd: EXAMPLE,
      encoding: 'utf8',
      env: {
        ...process.env,
        PYTHONPATH: join(ROOT, 'sdk', 'python'),
        PYTHONDONTWRITEBYTECODE: '1',
        OMP_NUM_THREADS: '1',
      },
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\b9 passed\b/);
  }, 120_000);
});
