/**
 * The mnist example (examples/mnist) runs end to end in one process: three nodes on an
 * InMemoryGrid, FedAvg for two rounds. Training is seeded, so the numbers are reproducible
 * (IID, measured: accuracy 0.909 then 0.925 federated, 0.901 then 0.923 on the server's test
 * digits; non-IID: 0.846 then 0.899). The thresholds sit a few points below, far above chance
 * (0.1) and above what a broken aggregation or a model that did not learn would reach.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  type ClientApp,
  createContext,
  InMemoryGrid,
  MemoryArtefacts,
  SERVER_NODE_ID,
  type ServerApp,
  type UserConfigValue,
} from 'pollen/sdk';
import { describe, expect, it, vi } from 'vitest';

// The example is its own project (examples/mnist/tsconfig.json type-checks it, mapping pollen/*
// to src/): import it by path so this project's tsc does not compile it with the wrong mapping.
const example = resolve(import.meta.dirname, '../examples/mnist');
const load = async <T>(file: string): Promise<T> =>
  ((await import(resolve(example, file))) as { default: T }).default;
const clientApp = await load<ClientApp>('src/client.ts');
const serverApp = await load<ServerApp>('src/server.ts');
const { METRICS_PREFIX } = (await import(resolve(example, 'src/metrics.ts'))) as { METRICS_PREFIX: string };
const pkg = JSON.parse(readFileSync(resolve(example, 'package.json'), 'utf8')) as {
  pollen: { config: Record<string, UserConfigValue> };
};

/** One POLLEN_METRICS line (examples/mnist/src/metrics.ts). */
interface RoundMetrics {
  round: number;
  loss: number | null;
  accuracy: number | null;
  nodes: string[];
  trainLoss: number;
  centralizedAccuracy: number;
}

async function simulate(
  overrides: Record<string, UserConfigValue>,
  artefacts = new MemoryArtefacts(),
): Promise<RoundMetrics[]> {
  const runConfig = { ...pkg.pollen.config, ...overrides };
  const nodes = Object.fromEntries(
    [0, 1, 2].map((p) => [
      String(p + 1),
      { app: clientApp, nodeConfig: { 'partition-id': p, 'num-partitions': 3 } },
    ]),
  );
  const lines: string[] = [];
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    const runId = 'mnist-test';
    await serverApp.run(
      new InMemoryGrid({ runId, nodes, runConfig }),
      createContext({ runId, nodeId: SERVER_NODE_ID, runConfig, artefacts }),
    );
  } finally {
    write.mockRestore();
  }
  return lines
    .filter((l) => l.startsWith(METRICS_PREFIX))
    .map((l) => JSON.parse(l.slice(METRICS_PREFIX.length)) as RoundMetrics);
}

describe('examples/mnist', () => {
  it('reaches about 90% accuracy on held-out digits in two IID rounds and saves the final model', async () => {
    const artefacts = new MemoryArtefacts();
    const rounds = await simulate({ 'num-rounds': 2 }, artefacts);
    expect(rounds.map((r) => r.round)).toEqual([1, 2]);
    const [first, last] = rounds as [RoundMetrics, RoundMetrics];
    expect(last.nodes.sort()).toEqual(['1', '2', '3']);
    expect(last.accuracy).toBeGreaterThan(0.88);
    expect(last.centralizedAccuracy).toBeGreaterThan(0.88);
    expect(last.accuracy!).toBeGreaterThan(first.accuracy!);
    expect(last.trainLoss).toBeLessThan(first.trainLoss);
    // The model as an .npz archive (a ZIP: "PK"), one .npy entry per weight array.
    expect(artefacts.list().map((a) => a.name)).toEqual(['final_model.npz']);
    const npz = Buffer.from(artefacts.get('final_model.npz')!);
    expect(npz.subarray(0, 2).toString()).toBe('PK');
    expect(npz.includes('.npy')).toBe(true);
  });

  it('learns with non-IID partitions too (each node holds mostly a few digits)', async () => {
    const rounds = await simulate({ 'num-rounds': 2, partitioning: 'non-iid' });
    const last = rounds[rounds.length - 1]!;
    expect(last.accuracy).toBeGreaterThan(0.8);
    expect(last.centralizedAccuracy).toBeGreaterThan(0.8);
  });
});
