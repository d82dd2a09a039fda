/**
 * Python apps for tests on an in-process SuperLink (test/support/inproc.ts): write an app folder
 * (pyproject.toml, a ClientApp module, an initial model), build it, start a run and follow its log.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@connectrpc/connect';
import { expect } from 'vitest';
import { buildApp } from '../../src/apps/build.js';
import type { Control } from '../../src/gen/pollen/v1/control_pb.js';
import type { UserConfigValue } from '../../src/sdk/context.js';
import { uploadChunks } from '../../src/transport/chunk-transfer.js';
import type { ChunkTransport } from '../../src/transport/chunk-transport.js';
import { chunkId } from '../../src/transport/chunks.js';
import { configToWire } from '../../src/transport/wire.js';
import { PYTHON } from './python.js';

export interface PythonAppOptions {
  dependencies: string[];
  /** The module `env_app/client_app.py`, which defines `app`. */
  client: string;
  /** Lines of `[tool.pollen.app.config]` after the built-in FedAvg's (one round, one node). */
  config?: string;
}

/** An app folder `dir/name` whose ServerApp is the built-in FedAvg over a 4-float model. */
export function writePythonApp(dir: string, name: string, o: PythonAppOptions): string {
  const app = join(dir, name);
  mkdirSync(join(app, 'env_app'), { recursive: true });
  writeFileSync(
    join(app, 'pyproject.toml'),
    `[project]
name = "${name}"
version = "1.0.0"
dependencies = ${JSON.stringify(o.dependencies)}
[tool.pollen.app.components]
serverapp = "pollen:FedAvg"
clientapp = "env_app.client_app:app"
[tool.pollen.app.config]
num-server-rounds = 1
initial-arrays = "model.npz"
fraction-evaluate = 0.0
min-available-nodes = 1
min-train-nodes = 1
min-evaluate-nodes = 0
${o.config ?? 'round-timeout = 30'}
`,
  );
  writeFileSync(join(app, 'env_app', '__init__.py'), '');
  writeFileSync(join(app, 'env_app', 'client_app.py'), o.client);
  const made = spawnSync(PYTHON, [
    '-c',
    `import numpy as np; np.savez(${JSON.stringify(join(app, 'model.npz'))}, w=np.arange(4, dtype=np.float32))`,
  ]);
  expect(made.status, String(made.stderr)).toBe(0);
  return app;
}

export interface Admin {
  control: Client<typeof Control>;
  chunks: ChunkTransport;
}

/** Build and run the app; its final state (`status:subStatus`) and its log lines. */
export async function runPythonApp(
  admin: Admin,
  appDir: string,
  buildDir: string,
  runConfig: Record<string, UserConfigValue> = {},
): Promise<{ final?: string; lines: string[] }> {
  const built = await buildApp(appDir, { outDir: buildDir });
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
    runConfig: configToWire(runConfig),
  });
  const lines: string[] = [];
  let final: string | undefined;
  for await (const m of admin.control.streamLogs({ runId, follow: true })) {
    lines.push(...m.lines.map((x) => x.text));
    if (m.run) final = `${m.run.status}:${m.run.subStatus}`;
  }
  return { final, lines };
}
