/**
 * Reading `.npz` archives: what NumPy itself writes (np.savez with its ZIP64 headers, and
 * np.savez_compressed), what encodeNpz writes, and a precise refusal of what Pollen cannot hold.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { everyDType, expectSameArrays } from '../../test/support/dtypes.js';
import { codeOf } from '../../test/support/errors.js';
import { PYTHON } from '../../test/support/python.js';
import { decodeNpz, encodeNpz } from './npz.js';
import { ArrayRecord } from './records.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-npz-read-'));

const file = (name: string): Uint8Array => readFileSync(join(dir, name));

const ARRAYS = `arrays = dict(
    w=np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    d=np.array([1e300, -2.5, 0.0]),
    i=np.array([-(2**31), 2**31 - 1], dtype=np.int32),
    l=np.array([-(2**62), 2**62 + 5], dtype=np.int64),
    b=np.arange(256, dtype=np.uint8),
    s=np.float32(3.5),
)`;

// One interpreter start writes every archive the tests read.
beforeAll(() => {
  const script = `import numpy as np, os
os.chdir(${JSON.stringify(dir)})
${ARRAYS}
np.savez('plain.npz', **arrays)
np.savez_compressed('small.npz', **arrays)
np.savez('complex.npz', c=np.zeros(2, dtype=np.complex64))
np.savez('f.npz', f=np.asfortranarray(np.zeros((2, 3), dtype=np.float32)))
np.savez('big.npz', big=np.zeros(2, dtype='>f4'))
`;
  execFileSync(PYTHON, ['-c', script]);
});

function expectNumpyArrays(record: ArrayRecord): void {
  expect([...record.keys()].sort()).toEqual(['b', 'd', 'i', 'l', 's', 'w']);
  const w = record.get('w', 'float32')!;
  expect(w.shape).toEqual([3, 4]);
  expect(Array.from(w.data)).toEqual(Array.from({ length: 12 }, (_, k) => Math.fround(Math.fround(k) / 7)));
  expect(Array.from(record.get('d', 'float64')!.data)).toEqual([1e300, -2.5, 0]);
  expect(Array.from(record.get('i', 'int32')!.data)).toEqual([-(2 ** 31), 2 ** 31 - 1]);
  expect(Array.from(record.get('l', 'int64')!.data)).toEqual([-(2n ** 62n), 2n ** 62n + 5n]);
  expect(record.get('b', 'uint8')!.data[255]).toBe(255);
  expect(record.get('s')).toMatchObject({ dtype: 'float32', shape: [] });
  expect(record.get('s')!.data[0]).toBe(3.5);
}

describe('decodeNpz', () => {
  it('reads what numpy.savez writes (ZIP64 headers), every dtype and shape bit for bit', () => {
    expectNumpyArrays(decodeNpz(file('plain.npz')));
  });

  it('reads what numpy.savez_compressed writes', () => {
    expectNumpyArrays(decodeNpz(file('small.npz')));
  });

  it('reads back what encodeNpz writes, names and order kept', () => {
    const record = ArrayRecord.fromArrays({
      'dense.kernel': { data: Float32Array.from([1, 2, 3, 4, 5, 6]), shape: [2, 3] },
      'dense.bias': new Float64Array([0.25]),
    });
    const back = decodeNpz(Buffer.concat(encodeNpz(record)));
    expect([...back.keys()]).toEqual(['dense.kernel', 'dense.bias']);
    expect(back.get('dense.kernel')).toEqual(record.get('dense.kernel'));
    expect(back.get('dense.bias')).toEqual(record.get('dense.bias'));
  });

  it('reads every dtype back bit for bit from what NumPy saves again, plain and compressed', () => {
    const every = everyDType();
    writeFileSync(join(dir, 'every.npz'), Buffer.concat(encodeNpz(every)));
    const script = `import numpy as np, os
os.chdir(${JSON.stringify(dir)})
with np.load('every.npz') as z:
    arrays = {k: z[k] for k in z.files}
np.savez('every-plain.npz', **arrays)
np.savez_compressed('every-small.npz', **arrays)
`;
    execFileSync(PYTHON, ['-c', script]);
    for (const name of ['every-plain.npz', 'every-small.npz']) expectSameArrays(decodeNpz(file(name)), every);
  });

  it('refuses what it cannot hold, naming the file and the array', () => {
    const message = (bytes: Uint8Array) => {
      try {
        decodeNpz(bytes, 'initial-arrays model.npz');
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    expect(codeOf(() => decodeNpz(new TextEncoder().encode('not a zip')))).toBe('APP_INVALID');
    expect(message(new TextEncoder().encode('not a zip'))).toMatch(
      /^initial-arrays model.npz is not a NumPy .npz/,
    );
    expect(message(file('complex.npz'))).toMatch(/c has dtype <c8/);
    expect(message(file('f.npz'))).toMatch(/f is in Fortran order/);
    expect(message(file('big.npz'))).toMatch(/big has dtype >f4/);
  });
});
