/**
 * `pollen simulate` of a Python app: its ClientApp in one process per virtual node (own node id
 * and node config), the built-in FedAvg over their replies, the interpreter named in the result.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollenInProcess } from './support/cli.js';
import { PYTHON } from './support/python.js';

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
  const dir = join(work, name);
  mkdirSync(join(dir, 'sim_app'), { recursive: true });
  writeFileSync(
    join(dir, 'pyproject.toml'),
    `[project]
name = "${name}"
version = "0.1.0"
dependencies = ["numpy>=1.20"]
[tool.pollen.app.components]
serverapp = "${serverapp}"
clientapp = "sim_app.client_app:app"
[tool.pollen.app.config]
num-server-rounds = 2
initial-arrays = "model.npz"
fraction-evaluate = 0.0
min-evaluate-nodes = 0
`,
  );
  writeFileSync(join(dir, 'sim_app', '__init__.py'), '');
  writeFileSync(join(dir, 'sim_app', 'client_app.py'), CLIENT);
  writeFileSync(join(dir, 'sim_app', 'server_app.py'), 'app = None\n');
  const made = spawnSync(PYTHON, [
    '-c',
    `import numpy as np; np.savez(${JSON.stringify(join(dir, 'model.npz'))}, w=np.zeros(3, dtype=np.float32))`,
  ]);
  expect(made.status, String(made.stderr)).toBe(0);
  return dir;
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
