/**
 * The public surface of `pollen/sdk` and `pollen/strategies`: exactly the app's model, every
 * name described in docs/sdk.md, every class and function documented with an example.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as strategies from '../strategies/index.js';
import * as sdk from './index.js';

const read = (path: string): string => readFileSync(new URL(path, import.meta.url), 'utf8');
const doc = read('../../docs/sdk.md');

/** Every name an index re-exports (types too), with the module it comes from. */
function exportsOf(indexPath: string): Map<string, string> {
  const out = new Map<string, string>();
  const index = read(indexPath);
  for (const m of index.matchAll(/export \{([^}]*)\} from '([^']+)'/g)) {
    const source = new URL((m[2] as string).replace(/\.js$/, '.ts'), new URL(indexPath, import.meta.url));
    for (const item of (m[1] as string).split(','))
      if (item.trim() !== '') out.set(item.trim().replace(/^type /, ''), source.pathname);
  }
  return out;
}

const surfaces = [
  { name: 'pollen/sdk', index: './index.ts', module: sdk as Record<string, unknown> },
  {
    name: 'pollen/strategies',
    index: '../strategies/index.ts',
    module: strategies as Record<string, unknown>,
  },
];

describe('the public surface', () => {
  it('pollen/sdk exports the programming model only (no encoders, limits or runtime helpers)', () => {
    expect(Object.keys(sdk).sort()).toEqual([
      'ArrayRecord',
      'ClientApp',
      'ConfigRecord',
      'InMemoryGrid',
      'MemoryArtefacts',
      'Message',
      'MetricRecord',
      'PollenError',
      'RecordDict',
      'ReplyErrorCode',
      'SERVER_NODE_ID',
      'ServerApp',
      'createContext',
      'fromFloat16',
      'isPollenError',
      'reportRound',
      'toFloat16',
    ]);
  });

  it('pollen/strategies exports the strategies only (no kernels, sampling or option checks)', () => {
    expect(Object.keys(strategies).sort()).toEqual([
      'Bulyan',
      'FedAdagrad',
      'FedAdam',
      'FedAvg',
      'FedAvgM',
      'FedMedian',
      'FedOpt',
      'FedProx',
      'FedTrimmedAvg',
      'FedYogi',
      'Krum',
      'MultiKrum',
      'QFedAvg',
      'Strategy',
      'proximalTerm',
      'seededRng',
      'strategyFromRunConfig',
    ]);
  });

  for (const { name, index } of surfaces)
    it(`names every export of ${name} in docs/sdk.md`, () => {
      const missing = [...exportsOf(index).keys()].filter((n) => !doc.includes(`\`${n}\``));
      expect(missing).toEqual([]);
    });

  for (const { name, index, module } of surfaces)
    it(`documents every class and function of ${name} with TSDoc and an @example`, () => {
      const undocumented: string[] = [];
      for (const [exported, file] of exportsOf(index)) {
        if (!(exported in module)) continue; // a type
        const text = readFileSync(file, 'utf8');
        const at = text.search(
          new RegExp(`^export (abstract )?(class|function|async function|const) ${exported}\\b`, 'm'),
        );
        const before = text.slice(0, at).trimEnd();
        const comment = before.endsWith('*/') ? before.slice(before.lastIndexOf('/**')) : '';
        if (at < 0 || !comment.includes('@example')) undocumented.push(exported);
      }
      expect(undocumented).toEqual([]);
    });
});
