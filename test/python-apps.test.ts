import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import 'reflect-metadata';
import type { Client } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/apps/build.js';
import { pythonSdkDir } from '../src/apps/python-env.js';
import type { Control } from '../src/gen/pollen/v1/control_pb.js';
import { type SuperNode, startSuperNode } from '../src/supernode/supernode.js';
import { uploadChunks } from '../src/transport/chunk-transfer.js';
import type { ChunkTransport } from '../src/transport/chunk-transport.js';
import { chunkId } from '../src/transport/chunks.js';
import { configToWire } from '../src/transport/wire.js';
import { type InProcessLink, startInProcessLink } from './support/inproc.js';
import { PYTHON } from './support/python.js';
import { writePythonApp } from './support/python-app.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-pyapps-'));
const envOut = join(dir, 'env.json');
const log = pino({ level: 'silent' });
let l: InProcessLink;
let node: SuperNode;
let admin: { control: Client<typeof Control>; chunks: ChunkTransport };

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

function pythonApp(name: string, dependencies: string[]): string {
  return writePythonApp(join(dir, name), {
    name,
    dependencies,
    pkg: 'env_app',
    client: CLIENT,
    config: 'min-available-nodes = 1\nmin-train-nodes = 1\nround-timeout = 30\n',
  });
}

async function run(appDir: string): Promise<{ final?: string; lines: string[] }> {
  const built = await buildApp(appDir, { outDir: join(dir, 'build') });
  const bytes = readFileSync(built.path);
  const id = chunkId(bytes);
  await uploadChunks(admin.chunks, new Map([[id, bytes]]));
  const { runId } = await admin.control.startRun({
    fab: {
      hash: built.hash,
      size: BigInt(bytes.length),
      chunkIds: [id],
      name: built.manifest.name,
      version: built.manifest.version,
    },
    runConfig: configToWire({}),
  });
  const lines: string[] = [];
  let final: string | undefined;
  for await (const m of admin.control.streamLogs({ runId, follow: true })) {
    lines.push(...m.lines.map((x) => x.text));
    if (m.run) final = `${m.run.status}:${m.run.subStatus}`;
  }
  return { final, lines };
}

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
