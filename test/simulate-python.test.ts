import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

describe('pollen simulate of a Python app', () => {
  it('runs one ClientApp process per virtual node under the built-in FedAvg', async () => {
    const r = await pollenInProcess([
      'simulate',
      app('sim-py'),
      '--nodes',
      '2',
      '--python',
      PYTHON,
      '--json',
      '-o',
      join(work, 'out'),
    ]);
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

  it('refuses a Python ServerApp, saying where it runs', async () => {
    const r = await pollenInProcess([
      'simulate',
      app('sim-py-own', 'sim_app.server_app:app'),
      '--python',
      PYTHON,
      '--json',
    ]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('built-in ServerApp'),
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
