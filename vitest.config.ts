import { defineConfig } from 'vitest/config';

/**
 * The test files that start real federations (SuperLinks, SuperNodes, the CLI as processes) and
 * the longest of the rest: they run one at a time, in the project `processes`, so two federations
 * never compete for the cores. `npm test` runs it beside the project
 * `in-process` (everything else), two streams on two cores (scripts/test.mjs); `npx vitest run`
 * runs both projects, one file at a time.
 */
export const PROCESS_TESTS = [
  'test/federation.test.ts',
  'test/federation-faults.test.ts',
  'test/demo.test.ts',
  'test/workflows.test.ts',
  'test/chunk-transfer-1gib.test.ts',
  'test/cli-runtime.test.ts',
  'test/federation-limits.test.ts',
  'test/new-app-federation.test.ts',
  'test/app-failures.test.ts',
  'test/refusals.test.ts',
  'test/superlink-identity.test.ts',
  'test/install.test.ts',
  'test/federation-tenants.test.ts',
  'test/audit-process.test.ts',
  'test/python-interop.test.ts',
  'test/python-faults.test.ts',
  'test/nginx-proxy.test.ts',
  'test/strategies-federation.test.ts',
  'test/cert-rotate-all.test.ts',
  // Not federations, but whole processes (Python, a kit's start.sh, a backup of running
  // services): here so both projects end together (the in-process one was the longer by ~100 s).
  'test/python-sdk.test.ts',
  'test/python-notebook.test.ts',
  'test/backup-restore.test.ts',
  'test/mnist-example.test.ts',
  'test/kit-start-stop.test.ts',
  'test/pytorch-mnist-example.test.ts',
];

/**
 * A container image built with podman and started: minutes of waiting on the Debian mirror, dpkg
 * and podman's layers, little CPU. Its own project, which `npm test` runs as a third stream beside
 * the other two, so the wait lengthens neither.
 */
export const IMAGE_TESTS = ['test/images.test.ts'];

export default defineConfig({
  test: {
    reporters: ['default', './test/support/summary-reporter.ts'],
    pool: 'forks',
    // Components started by tests (in-process or as child processes, which inherit it) open no
    // ops listener unless a test asks for one: parallel files never compete for ports 9095-9097.
    env: { POLLEN_METRICS_ADDRESS: 'off' },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'processes', include: PROCESS_TESTS } },
      { extends: true, test: { name: 'images', include: IMAGE_TESTS } },
      {
        extends: true,
        test: {
          name: 'in-process',
          // The PostgreSQL server of the run: only these files use it.
          globalSetup: ['test/support/global-setup.ts'],
          // npm test runs these files with --no-isolate: one module graph for all of them instead
          // of a fresh import of it per file (the per-file collect was a quarter of this
          // project's CPU time on 2 cores). Files must leave no global state behind (timers,
          // environment, working folder). It is a flag there because vitest 3 takes a project's
          // `isolate` from the root config.
          include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: [...PROCESS_TESTS, ...IMAGE_TESTS],
        },
      },
    ],
  },
});
