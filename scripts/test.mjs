#!/usr/bin/env node
// The whole test suite: type-check and lint, build the CLI that integration tests spawn, run
// every test. Extra arguments go to vitest (e.g. `npm test -- src/pki`).
//
// The build comes first (the tests spawn dist/, the CLI through its bundle in dist/bundle/); the type-check and the lint read only the
// sources, so they run beside the build and the tests instead of before them: a failure of either
// is shown as soon as it happens and fails the whole command.
//
// The build and the type-check are incremental (their state in .tmp/, which git ignores): a
// second `npm test` re-checks and re-emits only what changed since the last one, instead of two
// whole compilations (about a minute of CPU) competing with the first tests for the two cores.
//
// The tests run as three vitest processes side by side, one per project of vitest.config.ts: the
// files that start real federations one at a time (`processes`, its output shown live), all the
// others (`in-process`), and the container image built and started with podman (`images`, mostly
// waiting on the mirror and podman); the last two show their output when they end. Vitest alone
// would give each project the same single worker on a 2-core machine, and more workers would run
// two federations at once.
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';

/** Run a command; `live` shows its output as it comes, else it is kept for the caller to show. */
function run(cmd, args, { live = false, note = '' } = {}) {
  process.stderr.write(`\n$ ${cmd} ${args.join(' ')}${note}\n`);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
    child.on('close', (code, signal) => resolve({ cmd, args, code: code ?? (signal ? 1 : 0), output })),
  );
}

const shown = (r) => `\n── ${r.cmd} ${r.args.join(' ')} ──\n${r.output}`;

/** `tsc` flags that keep what it learnt in .tmp/NAME.tsbuildinfo for the next run. */
const incremental = (name) => ['--incremental', '--tsBuildInfoFile', `.tmp/${name}.tsbuildinfo`];

// tsc re-emits only the files it knows changed: without dist/ (deleted, or a fresh clone), start over.
if (!existsSync('dist/cli/main.js')) rmSync('.tmp/build.tsbuildinfo', { force: true });

const checks = [
  ['npx', ['tsc', '-p', 'tsconfig.json', '--noEmit', ...incremental('typecheck')]],
  ['npx', ['biome', 'check', '.']],
].map(([cmd, args]) =>
  run(cmd, args, { note: '  (beside the build and the tests)' }).then((r) => {
    // A failed check is shown at once: there is no need to wait for the tests to read it.
    if (r.code !== 0) process.stderr.write(`${shown(r)}\n${r.cmd} ${r.args[0]} failed\n`);
    return r;
  }),
);

const compiled = await run('npx', ['tsc', '-p', 'tsconfig.build.json', ...incremental('build')], {
  live: true,
});
// The CLI's bundle (dist/bundle/), which bin/pollen.js runs: what the tests spawn.
const build = compiled.code === 0 ? await run('node', ['scripts/bundle.mjs'], { live: true }) : compiled;
if (build.code !== 0) {
  await Promise.all(checks);
  process.exit(build.code);
}

const extra = process.argv.slice(2);
// With file filters, one project may have none of the files: that is not a failure.
const vitest = (project) => [
  'vitest',
  'run',
  '--project',
  project,
  // One module graph for all in-process files (vitest.config.ts says why).
  ...(project === 'in-process' ? ['--no-isolate'] : []),
  ...(extra.length ? ['--passWithNoTests'] : []),
  ...extra,
];

const later = { note: '  (output below when it ends)' };
const results = await Promise.all([
  run('npx', vitest('processes'), { live: true }),
  run('npx', vitest('in-process'), later),
  run('npx', vitest('images'), later),
]);
const checked = await Promise.all(checks);
for (const r of checked) if (r.code === 0) process.stdout.write(shown(r));
const total = { passed: 0, failed: 0, skipped: 0 };
for (const r of results) {
  if (r.args[3] !== 'processes') process.stdout.write(`\n── ${r.args[3]} ──\n${r.output}`);
  // The summary reporter's line of each project, added up into the one line CI reads.
  const line = /(\d+) passed, (\d+) failed, (\d+) skipped/.exec(r.output);
  if (line) for (const [i, k] of ['passed', 'failed', 'skipped'].entries()) total[k] += Number(line[i + 1]);
}
for (const r of checked)
  if (r.code !== 0) process.stdout.write(`\n${r.cmd} ${r.args[0]} failed (shown above)\n`);
// The failures of both projects once more, last, where a reader of the output's end finds them.
const failures = results.flatMap((r) => r.output.split('\n').filter((l) => l.startsWith('FAILED ')));
if (failures.length) process.stdout.write(`\n${failures.join('\n')}\n`);
process.stdout.write(`\n${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`);
process.exitCode = [...results, ...checked].some((r) => r.code !== 0) ? 1 : 0;
