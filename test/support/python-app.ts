/** Python apps for tests: a pyproject.toml app with a built-in FedAvg and its ClientApp module. */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PYTHON } from './python.js';

export interface PythonAppSpec {
  name: string;
  dependencies: string[];
  /** The package (`PKG/client_app.py` holds `client`). */
  pkg: string;
  client: string;
  /** Default `pollen:FedAvg`. */
  serverapp?: string;
  /** Lines of [tool.pollen.app.config] beside num-server-rounds and initial-arrays. */
  config?: string;
  rounds?: number;
}

/** Write the app into `dir` with `model.npz` (float32 zeros) as its initial arrays. */
export function writePythonApp(dir: string, s: PythonAppSpec): string {
  mkdirSync(join(dir, s.pkg), { recursive: true });
  writeFileSync(
    join(dir, 'pyproject.toml'),
    `[project]
name = "${s.name}"
version = "1.0.0"
dependencies = ${JSON.stringify(s.dependencies)}
[tool.pollen.app.components]
serverapp = "${s.serverapp ?? 'pollen:FedAvg'}"
clientapp = "${s.pkg}.client_app:app"
[tool.pollen.app.config]
num-server-rounds = ${s.rounds ?? 1}
initial-arrays = "model.npz"
fraction-evaluate = 0.0
min-evaluate-nodes = 0
${s.config ?? ''}`,
  );
  writeFileSync(join(dir, s.pkg, '__init__.py'), '');
  writeFileSync(join(dir, s.pkg, 'client_app.py'), s.client);
  writeFileSync(join(dir, s.pkg, 'server_app.py'), 'app = None\n');
  const npz = join(dir, 'model.npz');
  const made = spawnSync(PYTHON, [
    '-c',
    `import numpy as np; np.savez(${JSON.stringify(npz)}, w=np.zeros(3, dtype=np.float32))`,
  ]);
  if (made.status !== 0) throw new Error(`numpy could not write ${npz}: ${made.stderr}`);
  return dir;
}
