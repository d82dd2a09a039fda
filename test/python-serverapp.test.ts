/**
 * A Python ServerApp drives TypeScript ClientApps: the SuperLink (mutual TLS, in this process)
 * starts `python -m pollen._runner serverapp` for the run, and two SuperNodes answer with
 * TypeScript ClientApps (embedded). Arrays cross in both directions as chunks (Python-encoded
 * instructions, TypeScript-encoded replies); the run's rounds, artefacts and outcome are what the
 * Python app did. One federation for every case.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata';
import type { Client } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/apps/build.js';
import type { Control } from '../src/gen/pollen/v1/control_pb.js';
import { ArrayRecord, ClientApp, MetricRecord, RecordDict } from '../src/sdk/index.js';
import { decodeNpz } from '../src/sdk/npz.js';
import type { SuperNode } from '../src/supernode/supernode.js';
import { downloadChunks, uploadChunks } from '../src/transport/chunk-transfer.js';
import type { ChunkTransport } from '../src/transport/chunk-transport.js';
import { chunkId, MemoryChunkStore } from '../src/transport/chunks.js';
import { configToWire } from '../src/transport/wire.js';
import { type InProcessLink, startInProcessLink, startNodes } from './support/inproc.js';
import { PYTHON } from './support/python.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-pyserver-'));
const BIG = 300_000; // float32 elements: 1.2 MB, several chunks each way
let link: InProcessLink;
let nodes: SuperNode[] = [];
let admin: { control: Client<typeof Control>; chunks: ChunkTransport };

const SERVER = `import numpy as np
from pollen import ArrayRecord, ConfigRecord, FedAvg, MetricRecord, ServerApp

app = ServerApp()

@app.main()
def main(grid, context):
    if context.run_config["raise"]:
        raise ValueError("the learning rate is negative")
    initial = ArrayRecord({"w": np.arange(${BIG}, dtype=np.float32) / 1000, "b": np.zeros(2)})
    result = FedAvg(min_available_nodes=2, min_train_nodes=2, min_evaluate_nodes=2).start(
        grid=grid, initial_arrays=initial, num_rounds=context.run_config["num-server-rounds"],
        train_config=ConfigRecord({"lr": 0.5}),
        evaluate_fn=lambda rnd, arrays: MetricRecord({"centralized-b": float(arrays["b"].numpy()[0])}),
    )
    print("final b", result.arrays["b"].numpy().tolist())
    context.save_artefact("final_model.npz", result.arrays)
`;

/** Node with partition p adds p + 1 to every value and weighs its reply p + 1; `fail-partition` raises. */
const tsClientApp = new ClientApp({
  train(message, context) {
    const p = Number(context.nodeConfig['partition-id']);
    if (context.runConfig['fail-partition'] === p) throw new Error(`partition ${p} has no data`);
    const out = new ArrayRecord();
    for (const [name, e] of message.content.getArrayRecord('arrays')!) {
      const data = e.data.slice() as Float32Array | Float64Array;
      for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) + p + 1;
      out.set(name, { dtype: e.dtype, shape: e.shape, data });
    }
    const lr = message.content.getConfigRecord('config')!.get('lr');
    return new RecordDict({
      arrays: out,
      metrics: new MetricRecord({ 'num-examples': p + 1, 'train-loss': p, lr: Number(lr) }),
    });
  },
  evaluate: (_m, context) =>
    new RecordDict({
      metrics: new MetricRecord({ 'num-examples': 1, accuracy: Number(context.nodeConfig['partition-id']) }),
    }),
});

function pythonApp(): string {
  const app = join(dir, 'py-server');
  mkdirSync(join(app, 'py_server'), { recursive: true });
  writeFileSync(
    join(app, 'pyproject.toml'),
    `[project]
name = "py-server"
version = "1.0.0"
dependencies = ["numpy>=1.20"]
[tool.pollen.app.components]
serverapp = "py_server.server_app:app"
clientapp = "py_server.client_app:app"
[tool.pollen.app.config]
num-server-rounds = 2
raise = false
fail-partition = -1
`,
  );
  writeFileSync(join(app, 'py_server', '__init__.py'), '');
  writeFileSync(join(app, 'py_server', 'server_app.py'), SERVER);
  // The nodes answer with their embedded TypeScript ClientApp; this one is never started.
  writeFileSync(join(app, 'py_server', 'client_app.py'), 'from pollen import ClientApp\napp = ClientApp()\n');
  return app;
}

let bundle: { hash: string; bytes: Buffer; name: string; version: string };

async function run(runConfig: Record<string, number | boolean>) {
  const { control } = admin;
  const id = chunkId(bundle.bytes);
  await uploadChunks(admin.chunks, new Map([[id, bundle.bytes]]));
  const { runId } = await control.startRun({
    fab: {
      hash: bundle.hash,
      size: BigInt(bundle.bytes.length),
      chunkIds: [id],
      name: bundle.name,
      version: bundle.version,
    },
    runConfig: configToWire(runConfig),
  });
  const lines: string[] = [];
  for await (const m of control.streamLogs({ runId, follow: true }))
    lines.push(...m.lines.map((l) => l.text));
  const details = await control.getRunDetails({ runId });
  return { runId, details, log: lines.join('\n') };
}

beforeAll(async () => {
  link = await startInProcessLink('pollen-pyserver-link-', { python: PYTHON });
  nodes = await startNodes(link, dir, [{ 'partition-id': 0 }, { 'partition-id': 1 }], { app: tsClientApp });
  admin = await link.admin();
  const built = await buildApp(pythonApp(), { outDir: join(dir, 'build') });
  bundle = {
    hash: built.hash,
    bytes: readFileSync(built.path),
    name: built.manifest.name,
    version: built.manifest.version,
  };
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.close();
  await link?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a Python ServerApp with TypeScript ClientApps', () => {
  it('runs FedAvg rounds, reports them, and saves the model it computed', { timeout: 120_000 }, async () => {
    const { runId, details, log } = await run({});
    expect(details.run?.subStatus, log).toBe('completed');
    // Weights 1 and 2: each round adds (1·1 + 2·2) / 3 = 5/3 to every value.
    const b = /final b \[(\S+), (\S+)\]/.exec(log)!;
    expect(
      [Number(b[1]), Number(b[2])].map((v) => v - 10 / 3).every((d) => Math.abs(d) < 1e-12),
      log,
    ).toBe(true);
    expect(details.rounds.map((r) => r.round)).toEqual([1, 2]);
    const r1 = details.rounds[0]!;
    expect([...r1.nodeIds].sort()).toEqual(nodes.map((n) => n.nodeId).sort());
    expect(r1.metrics['train-loss']).toBeCloseTo(2 / 3, 12); // (0·1 + 1·2) / 3
    expect(r1.metrics['lr']).toBe(0.5); // the train config reached the TypeScript app
    expect(r1.metrics['accuracy']).toBe(0.5);
    expect(r1.metrics['centralized-b']).toBeCloseTo(5 / 3, 6);
    expect(Number(r1.bytesSent)).toBe(4 * (BIG * 4 + 16)); // train and evaluate, two nodes each
    expect(Number(r1.bytesReceived)).toBe(2 * (BIG * 4 + 16));
    expect([r1.replies, r1.failures]).toEqual([4, 0]);
    // The artefact: the Python app's .npz, read by Pollen's own reader, values as averaged.
    const [artefact] = details.artefacts;
    expect(artefact?.name).toBe('final_model.npz');
    const store = new MemoryChunkStore();
    await downloadChunks(admin.chunks, artefact!.chunkIds, store, { scope: { runId } });
    const parts = await Promise.all(artefact!.chunkIds.map((id) => store.get(id)));
    const model = decodeNpz(Buffer.concat(parts.map((p) => p!)));
    const w = model.get('w', 'float32')!.data;
    expect(w.length).toBe(BIG);
    const expected = Math.fround(
      Math.fround(Math.fround(123_456 / 1000) + Math.fround(5 / 3)) + Math.fround(5 / 3),
    );
    expect(w[123_456]).toBeCloseTo(expected, 3);
  });

  it('a failing node is left out; an exception in the ServerApp fails the run with its reason', {
    timeout: 120_000,
  }, async () => {
    const partial = await run({ 'num-server-rounds': 1, 'fail-partition': 1 });
    expect(partial.details.run?.subStatus, partial.log).toBe('completed');
    expect(partial.log).toMatch(/node \S+ train failed: Error: partition 1 has no data/);
    expect(partial.details.rounds[0]?.metrics['train-failures']).toBe(1);
    expect(partial.log).toContain('final b [1.0, 1.0]'); // node 0's model alone

    const failed = await run({ raise: true });
    expect(failed.details.run?.subStatus).toBe('failed');
    expect(failed.details.run?.reason).toBe('ValueError: the learning rate is negative');
    expect(failed.log).toContain('Traceback (most recent call last)');
  });
});
