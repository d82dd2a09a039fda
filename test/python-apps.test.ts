import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pythonSdkDir } from '../src/apps/python-env.js';
import { type SuperNode, startSuperNode } from '../src/supernode/supernode.js';
import { type InProcessLink, startInProcessLink } from './support/inproc.js';
import { PYTHON } from './support/python.js';
import { type Admin, runPythonApp, writePythonApp } from './support/python-apps.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-pyapps-'));
const envOut = join(dir, 'env.json');
const log = pino({ level: 'silent' });
let l: InProcessLink;
let node: SuperNode;
let admin: Admin;

const CLIENT = `import json, os
from pollen import ClientApp, MetricRecord, RecordDict

app = ClientApp()
KEYS = ["POLLEN_GPUS", "CUDA_VISIBLE_DEVICES", "POLLEN_CPUS", "OMP_NUM_THREADS", "PYTHONPATH",
        "POLLEN_APP_TOKEN", "POLLEN_APP_REF", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "SECRET_OF_THE_NODE"]

@app.train()
def train(msg, context):
    with open(context.node_config["env-out"], "w") as f:
        json.dump({"env": {k: os.environ.get(k) for k in KEYS}, "gpus": context.gpus,
                   "resources": context.resources, "cwd": os.getcwd()}, f)
    return RecordDict({"arrays": msg.content["arrays"], "metrics": MetricRecord({"num-examples": 1})})
`;

const pythonApp = (name: string, dependencies: string[]): string =>
  writePythonApp(dir, name, { dependencies, client: CLIENT });
const run = (appDir: string) => runPythonApp(admin, appDir, join(dir, 'build'));

beforeAll(async () => {
  l = await startInProcessLink('pollen-pyapps-link-');
  process.env.SECRET_OF_THE_NODE = 'never-in-an-app';
  node = await startSuperNode({
    superlink: l.superlink.fleetUrl,
    tls: await l.tls('site-0'),
    name: 'site-0',
    workDir: join(dir, 'node'),
    nodeConfig: { 'env-out': envOut },
    python: PYTHON,
    resources: { cpu: 2, gpus: [0, 2] },
    log,
    pollIntervalMs: 100,
  });
  await node.ready;
  admin = await l.admin();
}, 60_000);

afterAll(async () => {
  delete process.env.SECRET_OF_THE_NODE;
  await node?.close();
  await l?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Python apps on a SuperNode', () => {
  it('runs the ClientApp with the SDK on its path, its GPU and CPUs, and no token or node secret', async () => {
    const { final, lines } = await run(pythonApp('env-app', ['numpy>=1.20']));
    expect(final, lines.join('\n')).toBe('finished:completed');
    const seen = JSON.parse(readFileSync(envOut, 'utf8'));
    expect(seen.env).toMatchObject({
      POLLEN_GPUS: '0',
      CUDA_VISIBLE_DEVICES: '0',
      POLLEN_CPUS: '2',
      OMP_NUM_THREADS: '2',
      POLLEN_APP_TOKEN: null,
      SECRET_OF_THE_NODE: null,
      POLLEN_APP_REF: 'env_app.client_app:app',
      PYTHONUNBUFFERED: '1',
      PYTHONDONTWRITEBYTECODE: '1',
    });
    expect(seen.env.PYTHONPATH).toBe(`${pythonSdkDir()}:${seen.cwd}`);
    expect(seen.gpus).toEqual([0]);
    expect(seen.resources).toEqual({ cpu: 2, gpus: [0] });
  }, 90_000);

  it('gives a TypeScript ClientApp the same resources in its Context', async () => {
    rmSync(envOut, { force: true });
    const { final, lines } = await run(join(import.meta.dirname, 'fixtures', 'apps', 'resources'));
    expect(final, lines.join('\n')).toBe('finished:completed');
    const seen = JSON.parse(readFileSync(envOut, 'utf8'));
    // One of the node's GPUs (0 or 2: the previous run's process may still hold one).
    const [gpu] = seen.gpus;
    expect([0, 2]).toContain(gpu);
    expect(seen).toEqual({
      gpus: [gpu],
      resources: { cpu: 2, gpus: [gpu] },
      env: { POLLEN_GPUS: String(gpu), POLLEN_CPUS: '2' },
    });
  }, 90_000);

  it('refuses a run whose requirements the interpreter lacks, before the app starts', async () => {
    rmSync(envOut, { force: true });
    const { lines } = await run(
      pythonApp('needs-more', ['numpy>=1.20', 'surely-not-installed-pollen-dist>=2']),
    );
    const text = lines.join('\n');
    expect(text).toContain(`node ${node.nodeId} train failed: APP_REQUIREMENTS_MISSING`);
    expect(text).toMatch(/surely-not-installed-pollen-dist>=2 \(not installed\) in \/\S+ \(Python 3\./);
    expect(existsSync(envOut)).toBe(false);
  }, 90_000);
});
