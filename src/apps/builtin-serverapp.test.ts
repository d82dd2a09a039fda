/**
 * The built-in ServerApps (`pollen:FedAvg`, `pollen:FedProx`): settings from the run config,
 * the initial model from the bundle's .npz, the final model as an artefact, and precise
 * refusals of a bad name, setting or file. In-process, over TypeScript ClientApps.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { codeOf, pollenErrorOf } from '../../test/support/errors.js';
import {
  ArrayRecord,
  ClientApp,
  createContext,
  InMemoryGrid,
  MemoryArtefacts,
  MetricRecord,
  RecordDict,
  SERVER_NODE_ID,
  type UserConfigValue,
} from '../sdk/index.js';
import { decodeNpz, encodeNpz } from '../sdk/npz.js';
import { FedAdam, FedAvg } from '../strategies/index.js';
import { builtinServerAppName } from './builtin-names.js';
import { builtinServerApp, builtinSettings, FINAL_MODEL_ARTEFACT } from './builtin-serverapp.js';

const bundle = mkdtempSync(join(tmpdir(), 'pollen-builtin-'));
mkdirSync(join(bundle, 'weights'));
const initial = ArrayRecord.fromArrays({
  'fc.weight': { data: Float32Array.from([0.5, -1, 2, 0.125]), shape: [2, 2] },
  'fc.bias': new Float64Array([1, 2]),
});
writeFileSync(join(bundle, 'weights', 'init.npz'), Buffer.concat(encodeNpz(initial)));
writeFileSync(join(bundle, 'broken.npz'), 'not an archive');

/** Node `id` adds `id` to every value, reports `examples` examples, and records its train configs. */
function node(id: number, examples: number, seen: Record<string, unknown>[]): ClientApp {
  return new ClientApp({
    train(message) {
      seen.push(message.content.getConfigRecord('config')!.toObject());
      const out = new ArrayRecord();
      for (const [name, e] of message.content.getArrayRecord('arrays')!) {
        const data = e.data.slice() as Float32Array | Float64Array;
        for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) + id;
        out.set(name, { dtype: e.dtype, shape: e.shape, data });
      }
      return new RecordDict({
        arrays: out,
        metrics: new MetricRecord({ 'num-examples': examples, loss: id }),
      });
    },
    evaluate: () =>
      new RecordDict({ metrics: new MetricRecord({ 'num-examples': examples, accuracy: id / 10 }) }),
  });
}

async function run(name: string, runConfig: Record<string, UserConfigValue>) {
  const seen: Record<string, unknown>[] = [];
  const nodes = { '1': node(1, 10, seen), '2': node(2, 30, seen), '3': node(3, 60, seen) };
  const grid = new InMemoryGrid({ runId: 'r1', nodes, runConfig });
  const artefacts = new MemoryArtefacts();
  const context = createContext({ runId: 'r1', nodeId: SERVER_NODE_ID, runConfig, artefacts });
  await builtinServerApp(name, bundle).run(grid, context);
  return { seen, artefacts, nodes };
}

const BASE = { 'num-server-rounds': 2, 'initial-arrays': 'weights/init.npz', 'local-epochs': 1 };

describe('builtinServerApp', () => {
  it('FedAvg runs the rounds from the bundle’s .npz and saves the model TypeScript FedAvg gives', async () => {
    const { seen, artefacts, nodes } = await run('FedAvg', { ...BASE, 'min-available-nodes': 3, seed: 7 });
    expect(seen.map((c) => c['server-round']).sort()).toEqual([1, 1, 1, 2, 2, 2]);
    const saved = decodeNpz(artefacts.get(FINAL_MODEL_ARTEFACT)!);
    const direct = await new FedAvg({ minAvailableNodes: 3 }).start({
      grid: new InMemoryGrid({ runId: 'r2', nodes }),
      initialArrays: initial,
      numRounds: 2,
    });
    expect([...saved.keys()]).toEqual(['fc.weight', 'fc.bias']);
    for (const name of saved.keys()) expect(saved.get(name)).toEqual(direct.arrays.get(name));
    // 0.1·1 + 0.3·2 + 0.6·3 = 2.5 added per round.
    expect(Array.from(saved.get('fc.bias')!.data as Float64Array)).toEqual([6, 7]);
  });

  it('FedProx sends proximal-mu with every train message; fraction-train samples the nodes', async () => {
    const { seen } = await run('FedProx', {
      ...BASE,
      'num-server-rounds': 1,
      'proximal-mu': 0.25,
      'fraction-train': 0.34,
      'min-train-nodes': 1,
      'min-available-nodes': 1,
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ 'proximal-mu': 0.25, 'server-round': 1 });
  });

  it('runs the catalogue: FedAdam from its run config keys gives what TypeScript FedAdam gives', async () => {
    const { artefacts, nodes } = await run('FedAdam', {
      ...BASE,
      eta: 0.05,
      'beta-1': 0.5,
      'min-available-nodes': 3,
    });
    const direct = await new FedAdam({ eta: 0.05, beta1: 0.5, minAvailableNodes: 3 }).start({
      grid: new InMemoryGrid({ runId: 'r2', nodes }),
      initialArrays: initial,
      numRounds: 2,
    });
    const saved = decodeNpz(artefacts.get(FINAL_MODEL_ARTEFACT)!);
    for (const name of saved.keys()) expect(saved.get(name)).toEqual(direct.arrays.get(name));
    expect(builtinSettings('Bulyan', { ...BASE, 'num-malicious-nodes': 1 }).strategy).toMatchObject({
      numMaliciousNodes: 1,
    });
    expect(codeOf(() => builtinSettings('QFedAvg', BASE))).toBe('INVALID_ARGUMENT'); // client-learning-rate
    expect(codeOf(() => builtinSettings('FedYogi', { ...BASE, 'beta-2': 1 }))).toBe('INVALID_ARGUMENT');
  });

  it('refuses an unknown built-in at once, naming the ones there are', () => {
    expect(builtinServerAppName('pollen:FedAvg')).toBe('FedAvg');
    expect(builtinServerAppName('app.server:app')).toBeUndefined();
    expect(codeOf(() => builtinServerApp('FedXgbBagging', bundle))).toBe('APP_INVALID');
    try {
      builtinServerApp('FedAVG', bundle);
    } catch (e) {
      expect((e as Error).message).toBe('Pollen has no built-in ServerApp "FedAVG"');
      expect((e as { hint: string }).hint).toMatch(/pollen:FedAvg, pollen:FedProx/);
    }
  });

  it('refuses a missing or bad setting, naming the key, what it takes and what it holds', () => {
    const message = (name: 'FedAvg' | 'FedProx', config: Record<string, UserConfigValue>) => {
      try {
        builtinSettings(name, config);
      } catch (e) {
        return `${(e as { code: string }).code}: ${(e as Error).message}`;
      }
      return 'no error';
    };
    expect(message('FedAvg', { 'initial-arrays': 'm.npz' })).toBe(
      'INVALID_ARGUMENT: Run config "num-server-rounds" must be an integer >= 0: it is not set',
    );
    expect(message('FedAvg', { 'num-server-rounds': 3 })).toMatch(
      /"initial-arrays" must be the path of an .npz/,
    );
    expect(message('FedAvg', { ...BASE, 'fraction-train': 1.5 })).toBe(
      'INVALID_ARGUMENT: Run config "fraction-train" must be a number in [0, 1]: got 1.5',
    );
    expect(message('FedAvg', { ...BASE, 'min-train-nodes': 'two' })).toMatch(
      /"min-train-nodes" must be an integer >= 0: got "two"/,
    );
    expect(message('FedAvg', { ...BASE, 'round-timeout': 0 })).toMatch(
      /"round-timeout" must be a number of seconds > 0/,
    );
    expect(message('FedProx', BASE)).toMatch(/"proximal-mu" must be a number >= 0: it is not set/);
    expect(message('FedProx', { ...BASE, 'proximal-mu': -1 })).toMatch(/got -1/);
    expect(builtinSettings('FedAvg', { ...BASE, 'round-timeout': 90 }).timeoutMs).toBe(90_000);
  });

  it('refuses an initial-arrays file outside the app, missing, or not an .npz', async () => {
    const fails = async (file: string) => pollenErrorOf(run('FedAvg', { ...BASE, 'initial-arrays': file }));
    const outside = await fails('../elsewhere.npz');
    expect([outside.code, outside.message]).toEqual([
      'INVALID_ARGUMENT',
      'Run config "initial-arrays" must be a path inside the app folder: got "../elsewhere.npz"',
    ]);
    expect((await fails('/etc/passwd')).code).toBe('INVALID_ARGUMENT');
    const missing = await fails('model.npz');
    expect([missing.code, missing.message]).toEqual([
      'FILE_NOT_FOUND',
      'The app has no initial-arrays file model.npz',
    ]);
    const broken = await fails('broken.npz');
    expect(broken.code).toBe('APP_INVALID');
    expect(broken.message).toMatch(/^initial-arrays broken.npz is not a NumPy .npz file/);
  });
});
