/**
 * Reference values from numpy, computed independently of Pollen's code: a test writes the
 * formula in Python (the paper's, plainly) and passes every case of its file in one call, so a
 * test file starts one Python process, not one per case.
 */
import { spawnSync } from 'node:child_process';
import { ArrayRecord } from '../../src/sdk/index.js';
import { PYTHON } from './python.js';

/** An array as the Python side sees it: `arr(a)` turns it into a float64 ndarray of its shape. */
export interface JsonArray {
  dtype: string;
  shape: number[];
  data: number[];
}

/** An ArrayRecord as name → JsonArray (values exactly, float32 widened to float64). */
export function jsonArrays(record: ArrayRecord): Record<string, JsonArray> {
  const out: Record<string, JsonArray> = {};
  for (const [name, e] of record)
    out[name] = { dtype: e.dtype, shape: [...e.shape], data: Array.from(e.data as Float32Array) };
  return out;
}

const PRELUDE = `
import json, sys
import numpy as np
def arr(a):
    return np.asarray(a["data"], dtype=np.float64).reshape(a["shape"])
def arrays(d):
    return {k: arr(v) for k, v in d.items()}
cases = json.load(sys.stdin)
`;

/**
 * Run `script` with numpy on `cases`: the script sees `cases` (the JSON value), `np`, `arr` and
 * `arrays`, and sets `results`, which comes back as JSON (ndarrays as nested lists).
 */
export function numpyReference<T>(script: string, cases: unknown): T {
  const source = `${PRELUDE}\n${script}\njson.dump(results, sys.stdout, default=lambda o: o.tolist())\n`;
  const run = spawnSync(PYTHON, ['-c', source], {
    input: JSON.stringify(cases),
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (run.status !== 0) throw new Error(`${PYTHON} failed (${run.status}): ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

/** Largest |actual − expected| / (1 + |expected|) over every element. */
export function maxRelativeError(actual: ArrayLike<number>, expected: readonly number[]): number {
  if (actual.length !== expected.length) return Number.POSITIVE_INFINITY;
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const e = expected[i] as number;
    worst = Math.max(worst, Math.abs((actual[i] as number) - e) / (1 + Math.abs(e)));
  }
  return Number.isNaN(worst) ? Number.POSITIVE_INFINITY : worst;
}

/** A record of random arrays, values in [-scale, scale), from `rng`. */
export function randomArrays(
  rng: () => number,
  layout: Record<string, { dtype: 'float32' | 'float64'; shape: number[] }>,
  scale = 1,
): ArrayRecord {
  const record = new ArrayRecord();
  for (const [name, { dtype, shape }] of Object.entries(layout)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (2 * rng() - 1) * scale;
    record.set(name, { dtype, shape, data });
  }
  return record;
}
