/**
 * sdk/python/gpu_check.py, the Python-only check a GPU machine runs (docs/python-gpu.md): here
 * without CUDA it trains the PyTorch example on CPU through the real runner loop and says so.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PYTHON } from './support/python.js';

const root = join(import.meta.dirname, '..');

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(PYTHON, ['sdk/python/gpu_check.py', ...args], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        PYTHONDONTWRITEBYTECODE: '1',
        CUDA_VISIBLE_DEVICES: '',
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the GPU check script', () => {
  it('trains the example through the runner on CPU when CUDA is absent, and checks the wire bit-exactly', {
    timeout: 240_000,
  }, async () => {
    const r = await run(['--rounds', '2', '--examples', '600', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({
      device: 'cpu',
      note: 'cuda not available — ran on cpu',
      dtype_failures: {},
      dtypes_without_tensors: expect.any(Array),
      bit_exact: true,
      ok: true,
    });
    expect(report.train.problems).toEqual([]);
    expect(report.train.steps_per_round).toBeGreaterThan(0);
    expect(report.train.step_s).toBeGreaterThan(0);
    expect(report.train_cpu).toBeUndefined();
  });

  it("fails with the app's error when the example cannot be loaded", { timeout: 240_000 }, async () => {
    const r = await run(['--rounds', '1', '--examples', '100', '--example', join(root, 'sdk/python/tests')]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(
      /problem: the example at .*sdk\/python\/tests cannot be imported \(No module named 'pytorch_mnist'\); --example names the pytorch-mnist folder/,
    );
    expect(r.stdout).toMatch(/FAILED$/m);
  });
});
