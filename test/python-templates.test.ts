/**
 * The Python templates of `pollen new` make apps that train: `pollen simulate` with the built-in
 * FedAvg the templates name, and each app's own ServerApp (server_app.py) with its ClientApp
 * through the SDK's in-memory grid (two nodes), with the test Python.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/apps/new-app.js';
import { pollenInProcess, tempDir } from './support/cli.js';
import { PYTHON } from './support/python.js';

const SDK = join(import.meta.dirname, '..', 'sdk', 'python');
const t = tempDir('pollen-py-templates-');
afterAll(() => t.cleanup());

/** Two nodes, the app's own run config; prints the rounds FedAvg reported, as JSON. */
const RUN = `
import json, sys, tomllib
from pollen import Context
from pollen.grid import InMemoryGrid
module = sys.argv[1]
client = __import__(module + ".client_app", fromlist=["app"]).app
server = __import__(module + ".server_app", fromlist=["app"]).app  # the one pyproject.toml names as the alternative
config = tomllib.load(open("pyproject.toml", "rb"))["tool"]["pollen"]["app"]["config"]
nodes = {"1": client, "2": client}
node_configs = {str(i + 1): {"partition-id": i, "num-partitions": 2} for i in range(2)}
grid = InMemoryGrid(nodes, run_config=config, node_configs=node_configs)
server(grid, Context(run_id="t", node_id="0", run_config=config))
print(json.dumps(grid.rounds))
`;

describe('the Python templates', () => {
  it('numpy: pollen simulate trains the new app with the built-in FedAvg from its model.npz', async () => {
    createApp({ name: 'sim-numpy', template: 'numpy', parentDir: t.dir });
    const r = await pollenInProcess(['simulate', 'sim-numpy', '--python', PYTHON, '--json'], { cwd: t.dir });
    expect(r.code, r.stderr).toBe(0);
    const d = r.json<{ rounds: { round: number; nodes: string[] }[]; metrics: Record<string, number> }>();
    expect(d.rounds.map((x) => [x.round, x.nodes.length])).toEqual([
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
    expect(d.metrics.accuracy).toBeGreaterThan(0.85);
  }, 120_000);

  it.each(['numpy', 'pytorch'])(
    '%s: the new app trains on two nodes, and its loss falls round by round',
    (template) => {
      const app = createApp({ name: `${template}-app`, template, parentDir: t.dir });
      const r = spawnSync(PYTHON, ['-c', RUN, `${template}_app`], {
        cwd: app.dir,
        encoding: 'utf8',
        env: { ...process.env, PYTHONPATH: SDK, PYTHONDONTWRITEBYTECODE: '1', OMP_NUM_THREADS: '1' },
      });
      expect(r.status, r.stderr).toBe(0);
      const rounds = JSON.parse(r.stdout.trim().split('\n').pop() as string) as {
        round: number;
        metrics: Record<string, number>;
        node_ids: string[];
      }[];
      expect(rounds.map((x) => [x.round, x.node_ids])).toEqual([
        [1, ['1', '2']],
        [2, ['1', '2']],
        [3, ['1', '2']],
      ]);
      expect(rounds[2]?.metrics.accuracy).toBeGreaterThan(0.85);
      expect(rounds[2]?.metrics.loss).toBeLessThan(rounds[0]?.metrics.loss as number);
      expect(r.stdout).toMatch(/final model/);
    },
    60_000,
  );
});
