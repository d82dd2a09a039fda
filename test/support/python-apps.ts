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
  /** The module `PKG/client_app.py`, which defines `app`. */
  client: string;
  /** The app's package (default `env_app`). */
  pkg?: string;
  /** Default the built-in `pollen:FedAvg`; `PKG/server_app.py` holds `app = None`. */
  serverapp?: string;
  /** num-server-rounds (default 1). */
  rounds?: number;
  /** min-available-nodes and min-train-nodes (default 1). */
  minNodes?: number;
  /** Lines of `[tool.pollen.app.config]` after the built-in FedAvg's. */
  config?: string;
}

/** An app folder `dir/name` whose ServerApp is (by default) the built-in FedAvg over a 4-float model. */
export function writePythonApp(dir: string, name: string, o: PythonAppOptions): string {
  const app = join(dir, name);
  const pkg = o.pkg ?? 'env_app';
  const minNodes = o.minNodes ?? 1;
  mkdirSync(join(app, pkg), { recursive: true });
  writeFileSync(
    join(app, 'pyproject.toml'),
    `[project]
name = "${name}"
version = "1.0.0"
dependencies = ${JSON.stringify(o.dependencies)}
[tool.pollen.app.components]
serverapp = "${o.serverapp ?? 'pollen:FedAvg'}"
clientapp = "${pkg}.client_app:app"
[tool.pollen.app.config]
num-server-rounds = ${o.rounds ?? 1}
initial-arrays = "model.npz"
fraction-evaluate = 0.0
min-available-nodes = ${minNodes}
min-train-nodes = ${minNodes}
min-evaluate-nodes = 0
${o.config ?? 'round-timeout = 30'}
`,
  );
  writeFileSync(join(app, pkg, '__init__.py'), '');
  writeFileSync(join(app, pkg, 'client_app.py'), o.client);
  writeFileSync(join(app, pkg, 'server_app.py'), 'app = None\n');
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
