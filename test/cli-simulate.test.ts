/**
 * `pollen new` and `pollen simulate` as a user types them, in-process through main(): a new app
 * from the template simulated on virtual nodes, the test fixture app whose arithmetic shows which
 * partition each node got, and every way a simulation is refused or fails.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalModel } from './support/app-template.js';
import { type CliResult, ensureBuilt, pollenInProcess, tempDir } from './support/cli.js';

const ROOT = resolve(import.meta.dirname, '..');
const TINY = join(ROOT, 'test/fixtures/apps/tiny');
const t = tempDir('pollen-sim-');
afterAll(() => t.cleanup());

const cli = (args: string[]) => pollenInProcess(args, { cwd: t.dir });

interface SimulationDoc {
  ok: boolean;
  runId: string;
  app: { name: string; version: string; hash: string };
  nodes: { nodeId: string; nodeConfig: Record<string, number | string | boolean> }[];
  runConfig: Record<string, number | string | boolean>;
  rounds: { round: number; metrics: Record<string, number>; nodes: string[] }[];
  metrics: Record<string, number>;
  dir: string | null;
  artefacts: { name: string; size: number; hash: string; path: string }[];
  seconds: number;
  error?: { code: string; message: string; hint: string };
}

/** stdout of a --json run: exactly one JSON document (JSON.parse refuses anything more). */
function doc(r: CliResult): SimulationDoc {
  try {
    return JSON.parse(r.stdout) as SimulationDoc;
  } catch {
    throw new Error(`stdout is not exactly one JSON document:\n${r.stdout}\n--- stderr:\n${r.stderr}`);
  }
}

function expectError(r: CliResult, code: string, exit: number): { message: string; hint: string } {
  const d = doc(r);
  expect(d.ok, r.stdout).toBe(false);
  expect(d.error?.code, r.stdout).toBe(code);
  expect(r.code, r.stdout + r.stderr).toBe(exit);
  return d.error!;
}

/** An app folder with the tiny fixture's package.json, patched, and the given sources. */
function fixtureApp(
  name: string,
  config: Record<string, unknown>,
  sources: Record<string, string> = {},
): string {
  const dir = join(t.dir, name);
  cpSync(TINY, dir, { recursive: true });
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  pkg.name = name;
  pkg.pollen.config = config;
  writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg));
  for (const [path, text] of Object.entries(sources)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

beforeAll(() => {
  // The template's ServerApp bundles pollen/strategies, which comes from this Pollen's dist/.
  ensureBuilt('strategies/index.js');
});

describe('pollen new, then pollen simulate', () => {
  it('makes an app that trains on virtual nodes, with progress per round and one JSON document', async () => {
    const made = await cli(['new', 'sim-app', '--json']);
    expect(made.code, made.stdout + made.stderr).toBe(0);
    expect(made.json()).toMatchObject({
      ok: true,
      name: 'sim-app',
      template: 'ts',
      dir: join(t.dir, 'sim-app'),
      next: ['cd sim-app', 'npm install', 'pollen simulate .', 'pollen run . FEDERATION --stream'],
    });

    const r = await cli(['simulate', 'sim-app', '--nodes', '2', '--json']);
    const d = doc(r);
    expect(r.code, r.stderr).toBe(0);
    expect(d.app).toMatchObject({
      name: 'sim-app',
      version: '1.0.0',
      hash: expect.stringMatching(/^sha256:/),
    });
    expect(d.nodes).toEqual([
      { nodeId: '0000000000000001', nodeConfig: { 'partition-id': 0, 'num-partitions': 2 } },
      { nodeId: '0000000000000002', nodeConfig: { 'partition-id': 1, 'num-partitions': 2 } },
    ]);
    expect(d.runConfig['num-rounds']).toBe(3);
    expect(d.rounds.map((x) => x.round)).toEqual([1, 2, 3]);
    expect([...d.rounds[0]!.nodes].sort()).toEqual(['0000000000000001', '0000000000000002']);
    // Logistic regression on separable-but-noisy data: it learns, and the loss falls round by round.
    expect(d.metrics).toEqual(d.rounds[2]!.metrics);
    expect(d.metrics['accuracy']).toBeGreaterThan(0.8);
    expect(d.rounds[2]!.metrics['loss']).toBeLessThan(d.rounds[0]!.metrics['loss']!);
    // Progress on stderr as each round ends, the app's own output there too (stdout holds the document).
    expect(r.stderr).toContain('simulating sim-app 1.0.0 on 2 virtual nodes');
    for (const n of [1, 2, 3]) expect(r.stderr).toMatch(new RegExp(`round ${n}: train-loss \\d`));
    const model = finalModel(r.stderr);
    expect(model.weights).toHaveLength(8);
    // The final model the ServerApp saved is in ./RUN_ID, readable by its owner only.
    const npz = join(t.dir, d.runId, 'final_model.npz');
    expect(d.artefacts).toEqual([
      {
        name: 'final_model.npz',
        size: statSync(npz).size,
        hash: expect.stringMatching(/^sha256:/),
        path: npz,
      },
    ]);
    expect(statSync(npz).mode & 0o777).toBe(0o600);
    expect(readFileSync(npz).subarray(0, 2).toString()).toBe('PK'); // a zip, as NumPy writes .npz

    // Seeded: the same simulation again ends with the same model, bit for bit.
    const again = await cli(['simulate', 'sim-app', '--nodes', '2', '-o', 'again', '--json']);
    expect(doc(again).rounds).toEqual(d.rounds);
    expect(finalModel(again.stderr)).toEqual(model);
    expect(readFileSync(join(t.dir, 'again', 'final_model.npz')).equals(readFileSync(npz))).toBe(true);
  });

  it('prints text: the app output on stdout, the rounds and the final metrics', async () => {
    const r = await cli(['simulate', 'sim-app', '--rounds', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^final model \{"weights":\[/m);
    expect(r.stdout).toMatch(/simulated sim-app 1\.0\.0: 1 round on 3 virtual nodes in \d+\.\d s/);
    expect(r.stdout).toMatch(/round {3}1 {2}train-loss \d\.\d{4} {2}loss \d\.\d{4} {2}accuracy/);
    expect(r.stdout).toMatch(/final metrics: train-loss/);
  });
});

describe('pollen simulate on the fixture app', () => {
  it('gives virtual node p partition p: node p adds p + 1, weighted by 10 (p + 1)', async () => {
    const r = await cli(['simulate', TINY, '--nodes', '2', '--rounds', '1', '--json']);
    const d = doc(r);
    expect(r.code, r.stderr).toBe(0);
    // (10 · 1 + 20 · 2) / 30, as on a federation of two sites with partitions 0 and 1.
    expect(d.rounds[0]!.metrics['w0']).toBeCloseTo(5 / 3, 5);
    expect(r.stderr).toContain('round 1: w[0] = 1.666');
  });

  it('passes --run-config and --node-config to the app', async () => {
    const app = fixtureApp('sleepy', {
      'num-rounds': 1,
      size: 4,
      'min-nodes': 1,
      'round-timeout': 5,
      'sleep-ms': 1,
    });
    const r = await cli([
      'simulate',
      app,
      '--nodes',
      '1',
      '--run-config',
      'size=2',
      '--node-config',
      'site=a',
      '--json',
    ]);
    const d = doc(r);
    expect(r.code, r.stderr).toBe(0);
    expect(d.runConfig).toMatchObject({ size: 2, 'num-rounds': 1 });
    expect(d.nodes[0]!.nodeConfig).toEqual({ site: 'a', 'partition-id': 0, 'num-partitions': 1 });
  });

  it('reports a ServerApp that fails: the rounds so far, RUN_FAILED with its reason, the output it wrote', async () => {
    const app = fixtureApp(
      'breaks',
      { 'num-rounds': 3 },
      {
        'src/server.ts': `import { reportRound, ServerApp } from 'pollen/sdk';
export default new ServerApp(async (grid, context) => {
  await reportRound(grid, { round: 1, metrics: { loss: 0.5 }, nodeIds: await grid.nodeIds() });
  await context.artefacts.save('partial/history.json', '[0.5]');
  process.stdout.write('about to fail, no newline');
  throw new Error('round 2 went wrong');
});
`,
      },
    );
    const r = await cli(['simulate', app, '-o', 'breaks-out', '--json']);
    const e = expectError(r, 'RUN_FAILED', 1);
    expect(e.message).toBe('The ServerApp failed: round 2 went wrong');
    expect(e.hint).toContain('fix the app');
    expect(doc(r).rounds).toEqual([{ round: 1, metrics: { loss: 0.5 }, nodes: expect.any(Array) }]);
    // What it saved before it failed is kept, as a SuperLink keeps a failed run's artefacts.
    expect(readFileSync(join(t.dir, 'breaks-out', 'partial', 'history.json'), 'utf8')).toBe('[0.5]');
    expect(r.stderr).toContain('about to fail, no newline');

    const text = await cli(['simulate', app]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('simulation failed');
    expect(text.stderr).toContain('error[RUN_FAILED]: The ServerApp failed: round 2 went wrong');
  });
});

describe('pollen simulate refuses', () => {
  it('an artefact name that leaves the output folder: the run fails with its code, nothing is written', async () => {
    const app = fixtureApp(
      'escapes',
      { 'num-rounds': 1 },
      {
        'src/server.ts': `import { ServerApp } from 'pollen/sdk';
export default new ServerApp(async (_grid, context) => {
  await context.artefacts.save('../outside.txt', 'no');
});
`,
      },
    );
    const r = await cli(['simulate', app, '-o', 'escapes-out', '--json']);
    const e = expectError(r, 'RUN_FAILED', 1);
    expect(e.message).toMatch(/^The ServerApp failed: ARTEFACT_NAME_INVALID: /);
    expect(doc(r)).toMatchObject({ dir: null, artefacts: [] });
    expect(existsSync(join(t.dir, 'outside.txt'))).toBe(false);
    expect(existsSync(join(t.dir, 'escapes-out'))).toBe(false);
  });

  it('a node count out of range, or not a number', async () => {
    expect(
      expectError(await cli(['simulate', TINY, '--nodes', '0', '--json']), 'INVALID_ARGUMENT', 2).message,
    ).toBe('A simulation runs 1 to 1000 virtual nodes, not 0');
    expect(
      expectError(await cli(['simulate', TINY, '--nodes', 'many', '--json']), 'INVALID_ARGUMENT', 2).message,
    ).toBe('--nodes takes a whole number, not "many"');
  });

  it('fewer virtual nodes than the app says it needs (min-nodes), at once instead of waiting', async () => {
    const e = expectError(await cli(['simulate', TINY, '--nodes', '1', '--json']), 'INVALID_ARGUMENT', 2);
    expect(e.message).toBe('The app needs at least 2 nodes (run config "min-nodes"), the simulation has 1');
    expect(e.hint).toBe('Simulate with --nodes 2 or more, or lower it: --run-config min-nodes=1.');
  });

  it('a run config key the app does not declare, naming the keys it has', async () => {
    const e = expectError(
      await cli(['simulate', TINY, '--run-config', 'nope=1', '--json']),
      'RUN_CONFIG_UNKNOWN',
      2,
    );
    expect(e.message).toBe('The app pollen-test-tiny has no run config "nope"');
    const declared = Object.keys(JSON.parse(readFileSync(join(TINY, 'package.json'), 'utf8')).pollen.config);
    expect(declared).toContain('num-rounds');
    expect(e.hint).toContain(`It declares: ${declared.join(', ')}.`);
  });

  it('--rounds for an app without num-rounds, and the rounds given twice', async () => {
    const app = fixtureApp('no-rounds', { size: 8, 'min-nodes': 2 });
    const e = expectError(await cli(['simulate', app, '--rounds', '2', '--json']), 'INVALID_ARGUMENT', 2);
    expect(e.message).toBe('no-rounds declares no run config "num-rounds" to set the number of rounds');
    expect(e.hint).toContain('its keys: size, min-nodes');
    const twice = ['simulate', TINY, '--rounds', '2', '--run-config', 'num-rounds=3', '--json'];
    expect(expectError(await cli(twice), 'INVALID_ARGUMENT', 2).hint).toBe('Give the number of rounds once.');
  });

  it('node config that would change the partitions it assigns', async () => {
    const e = expectError(
      await cli(['simulate', TINY, '--node-config', 'partition-id=3', '--json']),
      'INVALID_ARGUMENT',
      2,
    );
    expect(e.message).toBe('The simulation sets partition-id of each virtual node itself');
  });

  it('a folder that is not an app', async () => {
    expectError(await cli(['simulate', join(t.dir, 'nowhere'), '--json']), 'FILE_NOT_FOUND', 4);
  });
});

describe('pollen new refuses', () => {
  it('a folder that exists, a bad name and an unknown template, each with its code and exit code', async () => {
    mkdirSync(join(t.dir, 'busy'));
    writeFileSync(join(t.dir, 'busy', 'x'), '');
    expect(expectError(await cli(['new', 'busy', '--json']), 'FILE_EXISTS', 6).hint).toContain(
      'another name',
    );
    expect(expectError(await cli(['new', 'Bad Name', '--json']), 'INVALID_ARGUMENT', 2).hint).toContain(
      'lowercase letters',
    );
    const e = expectError(
      await cli(['new', 'x-app', '--template', 'tensorflow', '--json']),
      'INVALID_ARGUMENT',
      2,
    );
    expect(e.hint).toContain('ts (TypeScript');
    expect(e.hint).toContain('pytorch (Python, PyTorch');
  });
});

describe('pollen new --template pytorch', () => {
  it('makes a Python app and says what to run next, with nothing to install', async () => {
    const made = await cli(['new', 'py-app', '--template', 'pytorch', '--json']);
    expect(made.code, made.stdout + made.stderr).toBe(0);
    expect(made.json()).toMatchObject({
      ok: true,
      template: 'pytorch',
      language: 'python',
      next: ['cd py-app', 'pollen env check .', 'pollen simulate .', 'pollen run . FEDERATION --stream'],
    });
    expect(existsSync(join(t.dir, 'py-app', 'py_app', 'client_app.py'))).toBe(true);
  });
});
