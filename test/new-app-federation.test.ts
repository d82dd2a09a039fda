/**
 * The first own app, as a new user makes it, with real processes: `pollen new`, `npm install`
 * with no registry to reach, a type-check, `pollen simulate` on two virtual nodes, and a run of
 * the same app on a real federation of two SuperNodes (mutual TLS). Simulation and federation end
 * with the same model, bit for bit (tolerance 0): the sites' partitions follow the order of their
 * node ids, as the virtual nodes' do, and replies are aggregated in node order.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { nodeIdFromIdentity } from '../src/superlink/node-identity.js';
import { finalModel } from './support/app-template.js';
import { ensureBuilt, pollenAsync } from './support/cli.js';
import {
  completedRun,
  FEDERATION,
  type Federation,
  makePki,
  pollen,
  ROOT,
  startFederation,
  stopAll,
  tempDir,
} from './support/federation.js';

const t = tempDir('pollen-new-fed-');
let fed: Federation | undefined;
afterAll(async () => {
  await fed?.close();
  await stopAll();
  t.cleanup();
});

/** A loopback port nothing listens on: a registry there refuses every connection. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const { port } = server.address() as { port: number };
  await new Promise<void>((res) => server.close(() => res()));
  return port;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function maxAbsDifference(a: number[], b: number[]): number {
  expect(a).toHaveLength(b.length);
  return Math.max(...a.map((v, i) => Math.abs(v - (b[i] as number))));
}

it('pollen new + npm install (no registry) + simulate + a real run: the same final model', async () => {
  ensureBuilt('cli/main.js');
  const work = join(t.dir, 'work');
  mkdirSync(work);
  const made = await pollenAsync(['new', 'first-app', '--json'], { cwd: work });
  expect(made.code, made.stdout + made.stderr).toBe(0);
  const app = join(work, 'first-app');

  // npm install with a registry that refuses connections and an empty cache: it succeeds only
  // if nothing is fetched. Scripts are skipped because this checkout's prepare rebuilds dist/
  // under the other tests; an installed Pollen has no sources, and its prepare does nothing.
  const npm = spawnSync(
    'npm',
    [
      'install',
      `--registry=http://127.0.0.1:${await closedPort()}/`,
      `--cache=${join(t.dir, 'npm-cache')}`,
      '--fetch-retries=0',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
      '--no-update-notifier',
    ],
    { cwd: app, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } },
  );
  expect(npm.status, `${npm.stdout}\n${npm.stderr}`).toBe(0);
  const sdk = join(app, 'node_modules', 'pollen');
  expect(lstatSync(sdk).isSymbolicLink()).toBe(true);
  expect(realpathSync(sdk)).toBe(realpathSync(ROOT));
  const { prepare } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts;
  const noSources = spawnSync('sh', ['-c', prepare], {
    cwd: t.dir,
    env: { PATH: dirname(process.execPath) },
  });
  expect(noSources.status, 'the prepare script of an installed Pollen (no src/) builds nothing').toBe(0);

  // The app type-checks as generated (strict, against this Pollen's declarations).
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', app], {
    encoding: 'utf8',
  });
  expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);

  const simulatedDir = join(t.dir, 'simulated');
  const sim = await pollen(['simulate', app, '--nodes', '2', '-o', simulatedDir, '--json'], {
    timeoutMs: 60_000,
  });
  expect(sim.code, sim.stdout + sim.stderr).toBe(0);
  const simulated = sim.json<{ rounds: { round: number; metrics: Record<string, number> }[] }>();
  const simulatedModel = finalModel(sim.stderr);

  // Two sites; partition ids in the order of their node ids, as the virtual nodes have them.
  const pki = await makePki(t.dir);
  const sites = ['site-a', 'site-b'].sort((a, b) =>
    nodeIdFromIdentity({ project: 'fedtest', type: 'client', name: a }) <
    nodeIdFromIdentity({ project: 'fedtest', type: 'client', name: b })
      ? -1
      : 1,
  );
  fed = await startFederation('unused', { pki, dir: t.dir });
  for (const [p, name] of sites.entries()) await fed.addNode(name, p, { nodeConfig: ['num-partitions=2'] });
  const run = await completedRun(fed, [], app);
  const log = await fed.pollen(['log', run.run.runId, FEDERATION]);
  expect(log.code, log.stderr).toBe(0);
  const federatedModel = finalModel(log.stdout);

  expect(maxAbsDifference(federatedModel.weights, simulatedModel.weights)).toBe(0);
  expect(federatedModel).toEqual(simulatedModel);
  // The saved model too: pollen pull gets the bytes pollen simulate wrote.
  const pulledDir = join(t.dir, 'pulled');
  const pulled = await fed.pollen(['pull', run.run.runId, FEDERATION, '-o', pulledDir, '--json']);
  expect(pulled.code, pulled.stderr).toBe(0);
  const simulatedNpz = readFileSync(join(simulatedDir, 'final_model.npz'));
  expect(sim.json<{ artefacts: { name: string; hash: string }[] }>().artefacts).toEqual([
    expect.objectContaining({ name: 'final_model.npz', hash: `sha256:${sha256(simulatedNpz)}` }),
  ]);
  expect(readFileSync(join(pulledDir, 'final_model.npz')).equals(simulatedNpz)).toBe(true);
  expect(run.rounds.map((r) => r.metrics)).toEqual(simulated.rounds.map((r) => r.metrics));
}, 180_000);
