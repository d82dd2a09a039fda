import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollenInProcess } from './support/cli.js';
import { PYTHON } from './support/python.js';
import { writePythonApp } from './support/python-apps.js';

const work = mkdtempSync(join(tmpdir(), 'pollen-sim-py-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const CLIENT = `import os
from pollen import ArrayRecord, ClientApp, MetricRecord, RecordDict

app = ClientApp()
SEEN = []

@app.train()
def train(msg, context):
    SEEN.append(context.node_id)  # module state is per process, so per virtual node
    p = int(context.node_config["partition-id"])
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    print("trained partition", p, "pid", os.getpid())
    return RecordDict({
        "arrays": ArrayRecord([a + p for a in arrays]),
        "metrics": MetricRecord({"num-examples": 1, "calls": len(SEEN)}),
    })
`;

const SERVER = `from pollen import ArrayRecord, FedAvg, ServerApp
import numpy as np

app = ServerApp()

@app.main()
def main(grid, context):
    result = FedAvg(fraction_evaluate=0.0, min_evaluate_nodes=0).start(
        grid=grid,
        initial_arrays=ArrayRecord({"w": np.arange(4, dtype=np.float32)}),
        num_rounds=int(context.run_config["num-server-rounds"]),
    )
    print("final", [a.tolist() for a in result.arrays.to_numpy_ndarrays()], "in run", context.run_id, flush=True)
    context.save_artefact("final_model.npz", result.arrays)
`;

function app(name: string, serverapp = 'pollen:FedAvg'): string {
  return writePythonApp(work, name, {
    dependencies: ['numpy>=1.20'],
    pkg: 'sim_app',
    client: CLIENT,
    serverapp,
    rounds: 2,
    minNodes: 2,
  });
}

/** `pollen simulate DIR --nodes 2 --python PYTHON --json …more`. */
const simulate = (dir: string, ...more: string[]) =>
  pollenInProcess(['simulate', dir, '--nodes', '2', '--python', PYTHON, '--json', ...more]);

describe('pollen simulate of a Python app', () => {
  it('runs one ClientApp process per virtual node under the built-in FedAvg', async () => {
    const r = await simulate(app('sim-py'), '-o', join(work, 'out'));
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.python).toMatchObject({ path: PYTHON, version: expect.stringMatching(/^3\./) });
    expect(doc.rounds).toHaveLength(2);
    // Each process kept its own state: 2 calls per node after 2 rounds.
    expect(doc.metrics.calls).toBe(2);
    expect(r.stderr).toMatch(/trained partition 0/);
    expect(r.stderr).toMatch(/trained partition 1/);
    expect(doc.artefacts.map((a: { name: string }) => a.name)).toEqual(['final_model.npz']);
  }, 120_000);

  it("runs the app's own Python ServerApp in a process, over ServerAppIo", async () => {
    const dir = app('sim-py-own', 'sim_app.server_app:app');
    writeFileSync(join(dir, 'sim_app', 'server_app.py'), SERVER);
    const r = await simulate(dir, '-o', join(work, 'out-own'));
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    // The Python FedAvg's rounds, reported over ServerAppIo as to a SuperLink.
    expect(doc.rounds.map((x: { round: number }) => x.round)).toEqual([1, 2]);
    expect(doc.metrics.calls).toBe(2);
    // w = 0..3; each round the nodes add 0 and 1, weighted equally: + 0.5 per round.
    expect(r.stderr).toMatch(/final \[\[1\.0, 2\.0, 3\.0, 4\.0\]\] in run [0-9a-f]{16}/);
    expect(doc.artefacts.map((a: { name: string }) => a.name)).toEqual(['final_model.npz']);
    expect(
      readFileSync(join(work, 'out-own', 'final_model.npz'))
        .subarray(0, 2)
        .toString(),
    ).toBe('PK');
  }, 120_000);

  it("fails with the Python ServerApp's own reason when it raises", async () => {
    const dir = app('sim-py-raises', 'sim_app.server_app:app');
    writeFileSync(
      join(dir, 'sim_app', 'server_app.py'),
      `from pollen import ServerApp\napp = ServerApp()\n\n@app.main()\ndef main(grid, context):\n    raise ValueError("no initial model for " + ",".join(grid.get_node_ids()))\n`,
    );
    const r = await simulate(dir);
    expect(r.code).not.toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.error).toMatchObject({
      code: 'RUN_FAILED',
      message: expect.stringMatching(/ValueError: no initial model for \d+,\d+/),
    });
    expect(doc.rounds).toEqual([]);
  }, 60_000);

  it('fails naming the missing export when the ServerApp module has no ServerApp', async () => {
    // writePythonApp's server_app.py holds `app = None`.
    const r = await pollenInProcess([
      'simulate',
      app('sim-py-none', 'sim_app.server_app:app'),
      '--python',
      PYTHON,
      '--json',
    ]);
    expect(JSON.parse(r.stdout).error).toMatchObject({
      code: 'RUN_FAILED',
      message: expect.stringContaining('APP_EXPORT_MISSING'),
    });
  }, 60_000);

  it('refuses an interpreter without the requirements, naming what is missing', async () => {
    const dir = app('sim-py-needs');
    writeFileSync(
      join(dir, 'pyproject.toml'),
      (await import('node:fs'))
        .readFileSync(join(dir, 'pyproject.toml'), 'utf8')
        .replace('"numpy>=1.20"', '"numpy>=1.20", "surely-not-installed-pollen-dist"'),
    );
    const r = await pollenInProcess(['simulate', dir, '--python', PYTHON, '--json']);
    expect(JSON.parse(r.stdout).error).toMatchObject({
      code: 'APP_REQUIREMENTS_MISSING',
      message: expect.stringContaining('surely-not-installed-pollen-dist (not installed)'),
    });
  }, 60_000);
});
