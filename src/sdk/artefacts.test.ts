/**
 * Run artefacts in the SDK: the name rules (no way out of `pollen pull`'s folder), the limits a
 * SuperLink sets, MemoryArtefacts (simulations), the ClientApp's refusal, and the `.npz` form of
 * an ArrayRecord: Info-ZIP's unzip checks and extracts the archive, and each entry is read as
 * NumPy's .npy format 1.0 defines it; NumPy itself loads every dtype.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bytesOf, everyDType, NUMPY_DESCR } from '../../test/support/dtypes.js';
import { codeOf, outcomeOf } from '../../test/support/errors.js';
import { PYTHON } from '../../test/support/python.js';
import { ClientApp, InMemoryGrid } from './app.js';
import { type ArtefactLimits, checkArtefactFits, checkArtefactName, MemoryArtefacts } from './artefacts.js';
import { Message } from './message.js';
import { encodeNpz } from './npz.js';
import { ArrayRecord, RecordDict } from './records.js';

const tmp = mkdtempSync(join(tmpdir(), 'pollen-npz-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('artefact names', () => {
  it('accept relative paths of plain segments', () => {
    for (const name of ['final_model.npz', 'plots/loss.svg', 'round-3/model.v2.npz', '_x', 'a'.repeat(255)])
      expect({ name, code: codeOf(() => checkArtefactName(name)) }).toEqual({ name, code: 'no error' });
  });

  it('refuse anything that could leave the output folder or hide in it (ARTEFACT_NAME_INVALID)', () => {
    for (const name of [
      '',
      '../model.npz',
      'a/../../b',
      '..',
      '.',
      '/etc/passwd',
      'a//b',
      'a/',
      '.hidden',
      'a\\..\\b',
      'C:model',
      'model npz',
      '-rf',
      'a'.repeat(256),
      'a/b\u0000',
    ])
      expect({ name, code: codeOf(() => checkArtefactName(name)) }).toEqual({
        name,
        code: 'ARTEFACT_NAME_INVALID',
      });
    expect(() => checkArtefactName('plots/../x')).toThrow(/segment "\.\."/);
  });
});

describe('artefact limits', () => {
  const limits: ArtefactLimits = { maxBytes: 100, runMaxBytes: 250, runMaxCount: 3 };
  const saved = new Map([
    ['a', 100],
    ['b', 100],
  ]);

  it('refuse one artefact too large, a run past its bytes or count, and a name that is a folder of another', () => {
    expect(codeOf(() => checkArtefactFits(saved, 'c', 101, limits))).toBe('ARTEFACT_TOO_LARGE');
    expect(codeOf(() => checkArtefactFits(saved, 'c', 51, limits))).toBe('RUN_ARTEFACTS_FULL');
    expect(codeOf(() => checkArtefactFits(saved, 'c', 50, limits))).toBe('no error');
    expect(codeOf(() => checkArtefactFits(new Map([...saved, ['c', 0]]), 'd', 0, limits))).toBe(
      'RUN_ARTEFACTS_FULL',
    );
    expect(codeOf(() => checkArtefactFits(saved, 'a/x', 1, limits))).toBe('ARTEFACT_NAME_INVALID');
    expect(codeOf(() => checkArtefactFits(new Map([['m/x', 1]]), 'm', 1, limits))).toBe(
      'ARTEFACT_NAME_INVALID',
    );
  });

  it('count a replaced artefact once: saving a name again frees its old bytes', () => {
    expect(codeOf(() => checkArtefactFits(saved, 'a', 100, limits))).toBe('no error');
    expect(codeOf(() => checkArtefactFits(new Map([...saved, ['c', 50]]), 'c', 50, limits))).toBe('no error');
  });
});

describe('MemoryArtefacts', () => {
  it('keeps bytes, text (UTF-8) and arrays (.npz) with their SHA-256; saving a name again replaces it', async () => {
    const store = new MemoryArtefacts();
    const bytes = await store.save('raw.bin', new Uint8Array([1, 2, 3]));
    expect(bytes).toEqual({
      name: 'raw.bin',
      size: 3,
      hash: 'sha256:039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81',
    });
    await store.save('metrics.json', '{"loss":0.5}');
    expect(new TextDecoder().decode(store.get('metrics.json'))).toBe('{"loss":0.5}');
    await store.save('raw.bin', 'now text');
    expect(store.list().map((a) => [a.name, a.size])).toEqual([
      ['metrics.json', 12],
      ['raw.bin', 8],
    ]);
    const model = ArrayRecord.fromArrays({ w: new Float32Array([1, 2]) });
    const saved = await store.save('model.npz', model);
    expect(Buffer.from(store.get('model.npz')!)).toEqual(Buffer.concat(encodeNpz(model)));
    expect(saved.size).toBe(store.get('model.npz')!.byteLength);
  });

  it('applies the name rules and the limits it is given', async () => {
    const store = new MemoryArtefacts({ maxBytes: 4 });
    expect(await outcomeOf(store.save('../x', 'a'))).toBe('ARTEFACT_NAME_INVALID');
    expect(await outcomeOf(store.save('x', 'abcde'))).toBe('ARTEFACT_TOO_LARGE');
    expect(store.list()).toEqual([]);
  });
});

describe("a ClientApp's context.artefacts", () => {
  it('refuses with ARTEFACTS_UNAVAILABLE: its outputs stay on its site', async () => {
    const app = new ClientApp().train(async (_msg, context) => {
      await context.artefacts.save('leak.bin', new Uint8Array(1));
      return new RecordDict();
    });
    const grid = new InMemoryGrid({ runId: 'r', nodes: { '1': app } });
    const [reply] = await grid.sendAndReceive([
      Message.create({ content: new RecordDict(), dstNodeId: '1', messageType: 'train' }),
    ]);
    expect(reply!.error?.reason).toBe('ARTEFACTS_UNAVAILABLE: A ClientApp cannot save run artefacts');
  });
});

/** Each .npy dtype: its item size and how to read item i. */
const NPY_READERS: Record<string, [number, (b: Buffer, i: number) => number]> = {
  '<f4': [4, (b, i) => b.readFloatLE(i * 4)],
  '<f8': [8, (b, i) => b.readDoubleLE(i * 8)],
  '<i4': [4, (b, i) => b.readInt32LE(i * 4)],
  '<i8': [8, (b, i) => Number(b.readBigInt64LE(i * 8))],
  '|u1': [1, (b, i) => b.readUInt8(i)],
};

/** One `.npy` file as NumPy reads it: the magic, version 1.0, a padded header dict, the data. */
function readNpy(data: Buffer): { descr: string; shape: number[]; values: number[] } {
  expect([...data.subarray(0, 8)]).toEqual([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const n = data.readUInt16LE(8);
  expect((10 + n) % 64).toBe(0);
  const header = data.subarray(10, 10 + n).toString('latin1');
  const m = /^\{'descr': '([<|][a-z]\d)', 'fortran_order': False, 'shape': \(([\d, ]*)\), \} *\n$/.exec(
    header,
  );
  expect(m, header).not.toBeNull();
  const shape = m![2]!
    .split(',')
    .filter((d) => d.trim() !== '')
    .map(Number);
  const body = data.subarray(10 + n);
  const [size, read] = NPY_READERS[m![1]!]!;
  return {
    descr: m![1]!,
    shape,
    values: Array.from({ length: body.byteLength / size }, (_, i) => read(body, i)),
  };
}

/** Each array of an `.npz`, as Info-ZIP's unzip extracts it (after checking every CRC). */
function readWithUnzip(bytes: Uint8Array): Record<string, ReturnType<typeof readNpy>> {
  const file = join(tmp, `m-${Math.random().toString(36).slice(2)}.npz`);
  writeFileSync(file, bytes);
  const test = spawnSync('unzip', ['-t', file], { encoding: 'utf8' });
  expect(test.status, test.stdout + test.stderr).toBe(0);
  const names = spawnSync('unzip', ['-Z1', file], { encoding: 'utf8' }).stdout.trim().split('\n');
  const out: Record<string, ReturnType<typeof readNpy>> = {};
  for (const name of names) {
    expect(name.endsWith('.npy')).toBe(true);
    out[name.slice(0, -4)] = readNpy(spawnSync('unzip', ['-p', file, name]).stdout);
  }
  return out;
}

describe('an ArrayRecord as .npz', () => {
  it('is a ZIP of .npy entries that unzip extracts: every dtype, shape and value', () => {
    const record = ArrayRecord.fromArrays({
      'dense/kernel': { data: new Float32Array([0.5, -1, 2, 3.25, 4, 5]), shape: [2, 3] },
      bias: new Float64Array([0.1, 0.2]),
      steps: new Int32Array([-7]),
      seen: new BigInt64Array([123n, -4n]),
      mask: { data: new Uint8Array([1, 0, 255]), shape: [3] },
      scalar: { data: new Float32Array([9]), shape: [] },
    });
    const read = readWithUnzip(Buffer.concat(encodeNpz(record)));
    expect(read).toEqual({
      'dense/kernel': { descr: '<f4', shape: [2, 3], values: [0.5, -1, 2, 3.25, 4, 5] },
      bias: { descr: '<f8', shape: [2], values: [0.1, 0.2] },
      steps: { descr: '<i4', shape: [1], values: [-7] },
      seen: { descr: '<i8', shape: [2], values: [123, -4] },
      mask: { descr: '|u1', shape: [3], values: [1, 0, 255] },
      scalar: { descr: '<f4', shape: [], values: [9] },
    });
  });

  it("opens in NumPy with each dtype's own descr and the same bytes, 0-d and empty arrays too", () => {
    const record = everyDType();
    const file = join(tmp, 'every-dtype.npz');
    writeFileSync(file, Buffer.concat(encodeNpz(record)));
    const script = [
      'import json, sys, numpy as np',
      'with np.load(sys.argv[1]) as z:',
      '    print(json.dumps({k: [z[k].dtype.str, list(z[k].shape), z[k].tobytes().hex()] for k in z.files}))',
    ].join('\n');
    const loaded = JSON.parse(execFileSync(PYTHON, ['-c', script, file], { encoding: 'utf8' }));
    expect(loaded).toEqual(
      Object.fromEntries(
        [...record].map(([name, e]) => [
          name,
          [NUMPY_DESCR[e.dtype], e.shape, bytesOf(e.data).toString('hex')],
        ]),
      ),
    );
  });

  it('is the same bytes for the same record, and holds array data as views (no copy)', () => {
    const w = new Float32Array(1000).fill(1.5);
    const parts = encodeNpz(ArrayRecord.fromArrays({ w }));
    expect(parts.some((p) => p.buffer === w.buffer)).toBe(true);
    expect(Buffer.concat(parts)).toEqual(Buffer.concat(encodeNpz(ArrayRecord.fromArrays({ w }))));
    expect(readWithUnzip(Buffer.concat(parts)).w!.values).toEqual(Array(1000).fill(1.5));
  });
});
