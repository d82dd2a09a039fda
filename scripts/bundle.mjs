#!/usr/bin/env node
// The CLI bundled by esbuild into dist/bundle/ (entry dist/bundle/pollen.js), built from tsc's
// output (dist/cli/main.js) after `tsc -p tsconfig.build.json`. A command then loads a few files
// instead of resolving and loading hundreds of modules. It is split where the CLI imports lazily
// (each command's implementation, each service): one file of all of it (8 MB) made every command
// pay V8's parse of all of it, slower than tsc's modules for `pollen --version`
// (docs/benchmarks.md). bin/pollen.js runs the bundle when it is there and not older than
// dist/cli/main.js. The rest of dist/ stays: the package exports ./sdk and ./strategies from it,
// and the app runner (dist/apps/runner.js) is started as its own script.
//
// Left out of the bundle, loaded from node_modules at run time:
// - better-sqlite3: a native addon, found by path (`bindings`) next to its package;
// - pg: its optional pg-native is required inside a try, which a bundler cannot keep optional;
// - esbuild: `pollen build` runs it, and it finds its platform binary by path from its package;
// - thread-stream (pino's transports): it starts a worker thread from a file beside itself.
// These are CommonJS packages: they are required when the module that imports them first runs,
// not when the bundle loads, so a command that needs none of them never loads them.
import { readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
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

const OUT = join(ROOT, 'dist', 'bundle');
const started = performance.now();
// Chunks are named by their content's hash: those of an earlier build would stay beside the new.
rmSync(OUT, { recursive: true, force: true });
const result = await build({
  absWorkingDir: ROOT,
  entryPoints: { pollen: 'dist/cli/main.js' },
  outdir: OUT,
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
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
// Every external must still resolve from the bundle, as it will at run time.
const require = createRequire(join(OUT, 'pollen.js'));
for (const name of EXTERNAL) require.resolve(name);
const files = Object.keys(result.metafile.outputs);
const kib = (file) => statSync(join(ROOT, file)).size / 1024;
const total = Math.round(files.reduce((sum, f) => sum + kib(f), 0));
const inputs = Object.keys(result.metafile.inputs).length;
process.stderr.write(
  `dist/bundle/: pollen.js ${Math.round(kib('dist/bundle/pollen.js'))} KiB and ${readdirSync(join(OUT, 'chunks')).length} chunks, ` +
    `${total} KiB in all, from ${inputs} modules in ${Math.round(performance.now() - started)} ms\n`,
);
