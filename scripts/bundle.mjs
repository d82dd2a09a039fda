#!/usr/bin/env node
// The CLI as one ESM file, dist/pollen.mjs, built from tsc's output (dist/cli/main.js) after
// `tsc -p tsconfig.build.json`. Node then reads one file at start instead of resolving and
// loading hundreds of modules; bin/pollen.js prefers it when it is there and not older than
// dist/cli/main.js. The rest of dist/ stays: the package exports ./sdk and ./strategies from it,
// and the app runner (dist/apps/runner.js) is started as its own script.
//
// Left out of the bundle, loaded from node_modules at run time:
// - better-sqlite3: a native addon, found by path (`bindings`) next to its package;
// - pg: its optional pg-native is required inside a try, which a bundler cannot keep optional;
// - esbuild: `pollen build` runs it, and it finds its platform binary by path from its package;
// - thread-stream (pino's transports): it starts a worker thread from a file beside itself.
// These are CommonJS packages: they are required when the module that imports them first runs,
// not at the bundle's start, so a command that needs none of them never loads them.
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const EXTERNAL = ['better-sqlite3', 'pg', 'esbuild', 'thread-stream'];
const external = new RegExp(`^(${EXTERNAL.join('|')})(/|$)`);

/**
 * An external ESM `import` would be hoisted to the bundle's top and load the package on every
 * command. Each external becomes a small CommonJS module instead, `module.exports = require(name)`,
 * which esbuild initialises only when the module importing it runs.
 */
const lazyExternals = {
  name: 'lazy-externals',
  setup(b) {
    b.onResolve({ filter: external }, (args) =>
      args.namespace === 'lazy-external'
        ? { path: args.path, external: true }
        : { path: args.path, namespace: 'lazy-external' },
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-external' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

const started = performance.now();
const result = await build({
  absWorkingDir: ROOT,
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/pollen.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Bundled CommonJS packages require Node's built-ins, and the externals above are required:
  // an ESM file has no `require`, so the bundle makes one.
  banner: {
    js: "import { createRequire as __pollenCreateRequire } from 'node:module'; const require = __pollenCreateRequire(import.meta.url);",
  },
  plugins: [lazyExternals],
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});
// Every external must still resolve from the package, as it will at run time.
const require = createRequire(new URL('../dist/pollen.mjs', import.meta.url));
for (const name of EXTERNAL) require.resolve(name);
const kib = Math.round(statSync(new URL('../dist/pollen.mjs', import.meta.url)).size / 1024);
const inputs = Object.keys(result.metafile.inputs).length;
process.stderr.write(
  `dist/pollen.mjs: ${kib} KiB from ${inputs} modules in ${Math.round(performance.now() - started)} ms\n`,
);
