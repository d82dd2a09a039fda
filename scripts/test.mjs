#!/usr/bin/env node
// The whole test suite: type-check and lint, build the CLI that integration tests spawn, run
// every test. Extra arguments go to vitest (e.g. `npm test -- src/pki`).
//
// The tests run as two vitest processes side by side, one per project of vitest.config.ts: the
// files that start real federations one at a time (`processes`, its output shown live) and all
// the others (`in-process`, its output shown when it ends). Vitest alone would give each project
// the same single worker on a 2-core machine, and more workers would run two federations at once.
import { spawn, spawnSync } from 'node:child_process';

for (const [cmd, args] of [
  ['npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']],
  ['npx', ['biome', 'check', '.']],
  ['npx', ['tsc', '-p', 'tsconfig.build.json']],
]) {
  process.stderr.write(`\n$ ${cmd} ${args.join(' ')}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const extra = process.argv.slice(2);
// With file filters, one project may have none of the files: that is not a failure.
const vitest = (project) => [
  'vitest',
  'run',
  '--project',
  project,
  ...(extra.length ? ['--passWithNoTests'] : []),
  ...extra,
];

/** Run one project; `live` shows its output as it comes, else it is kept and shown at the end. */
function run(project, live) {
  process.stderr.write(
    `\n$ npx ${vitest(project).join(' ')}${live ? '' : '  (output below when it ends)'}\n`,
  );
  const child = spawn('npx', vitest(project), { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  for (const [from, to] of [
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ])
    from.on('data', (d) => {
      output += d;
      if (live) to.write(d);
    });
  return new Promise((resolve) =>
    child.on('close', (code, signal) => resolve({ project, code: code ?? (signal ? 1 : 0), output })),
  );
}

const results = await Promise.all([run('processes', true), run('in-process', false)]);
const total = { passed: 0, failed: 0, skipped: 0 };
for (const r of results) {
  if (r.project === 'in-process') process.stdout.write(`\n── in-process ──\n${r.output}`);
  // The summary reporter's line of each project, added up into the one line CI reads.
  const line = /(\d+) passed, (\d+) failed, (\d+) skipped/.exec(r.output);
  if (line) for (const [i, k] of ['passed', 'failed', 'skipped'].entries()) total[k] += Number(line[i + 1]);
}
process.stdout.write(`\n${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`);
process.exitCode = results.some((r) => r.code !== 0) ? 1 : 0;
