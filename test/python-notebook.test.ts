/**
 * A researcher's notebook starts and follows a run from Python (`pollen.run`): Debian's
 * `jupyter nbconvert --execute` runs examples/notebooks/run-from-python.ipynb against a real
 * federation (a SuperLink over mutual TLS and two SuperNodes on 127.0.0.1), through the `pollen`
 * command and the connection file it reads. Needs the build (npm run build).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SuperNode } from '../src/supernode/supernode.js';
import { POLLEN_BIN } from './support/cli.js';
import {
  type InProcessLink,
  startInProcessLink,
  startNodes,
  writeFederationsFile,
} from './support/inproc.js';
import { PYTHON } from './support/python.js';

const ROOT = join(import.meta.dirname, '..');
const NOTEBOOK = join(ROOT, 'examples', 'notebooks', 'run-from-python.ipynb');
const TINY = join(ROOT, 'test', 'fixtures', 'apps', 'tiny');
const dir = mkdtempSync(join(tmpdir(), 'pollen-notebook-'));
const CONFIG = join(dir, 'config.toml');
type Done = (error: Error | null, stdout: string, stderr: string) => void;

/** A child process's stdout, without blocking the SuperLink and SuperNodes this process runs. */
function output(start: (done: Done) => void): Promise<string> {
  return new Promise((resolve, reject) =>
    start((error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

let link: InProcessLink;
let nodes: SuperNode[] = [];

/** What the notebook's cells read from the environment, and the CLI's connection file. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const k of Object.keys(out)) if (k.startsWith('POLLEN_')) delete out[k];
  return {
    ...out,
    POLLEN_CONFIG: CONFIG,
    POLLEN_METRICS_ADDRESS: 'off',
    POLLEN_BIN,
    POLLEN_SDK: join(ROOT, 'sdk', 'python'),
    PYTHONDONTWRITEBYTECODE: '1',
    ...extra,
  };
}

beforeAll(async () => {
  link = await startInProcessLink('pollen-notebook-link-');
  nodes = await startNodes(link, dir, [{ 'partition-id': 0 }, { 'partition-id': 1 }]);
  await writeFederationsFile(link, CONFIG, 'local');
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.close();
  await link?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('pollen.run from a notebook', () => {
  it('the example notebook starts a run, follows its rounds and reads its log', {
    timeout: 180_000,
  }, async () => {
    const out = join(dir, 'executed.ipynb');
    const args = [
      '--to',
      'notebook',
      '--execute',
      NOTEBOOK,
      '--output',
      out,
      '--ExecutePreprocessor.timeout=150',
    ];
    const cellEnv = env({
      POLLEN_APP_DIR: TINY,
      POLLEN_FEDERATION: 'local',
      POLLEN_RUN_CONFIG: JSON.stringify({ 'num-rounds': 2 }),
      POLLEN_OUTPUT_DIR: dir,
    });
    await output((done) => execFile('jupyter-nbconvert', args, { env: cellEnv }, done));
    const cells = JSON.parse(readFileSync(out, 'utf8')).cells as {
      cell_type: string;
      outputs?: { name?: string; text?: string[] | string }[];
    }[];
    const text = cells
      .flatMap((c) => c.outputs ?? [])
      .map((o) => (Array.isArray(o.text) ? o.text.join('') : (o.text ?? '')))
      .join('');
    const runId = /started (\S+) on default/.exec(text)?.[1];
    expect(runId, text).toBeDefined();
    expect(text).toMatch(/round 1 \{.*'w0'/);
    expect(text).toMatch(/round 2 \{/);
    expect(text).toContain('status finished:completed');
    expect(text).toContain('run completed'); // the run log, as run.logs() read it
    expect(text).toContain("['final_model.npz', 'metrics/w0.json']");
    expect(text).toMatch(/pulled into .*\n\{'w': \(8,\)\}/);
    // What the notebook printed is what the SuperLink holds for the run.
    const { control } = await link.admin();
    const details = await control.getRunDetails({ runId: runId! });
    expect(details.run?.subStatus).toBe('completed');
    expect(details.rounds.map((r) => r.round)).toEqual([1, 2]);
  });

  it('a refused run raises PollenError with the code and hint `pollen` gives', {
    timeout: 60_000,
  }, async () => {
    const script = `
import pollen
from pollen.errors import PollenError
try:
    pollen.run(${JSON.stringify(TINY)}, "local", run_config={"num-round": 2})
except PollenError as e:
    print(e.code, "|", e.args[0], "|", e.hint)
`;
    const stdout = await output((done) =>
      execFile(PYTHON, ['-c', script], { env: env({ PYTHONPATH: join(ROOT, 'sdk', 'python') }) }, done),
    );
    expect(stdout).toMatch(
      /^RUN_CONFIG_UNKNOWN \| The app pollen-test-tiny has no run config "num-round" \| Did you mean num-rounds\?/,
    );
  });
});
