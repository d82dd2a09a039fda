#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (built by `npm ci` through the prepare script).
// dist/bundle/pollen.js is the CLI bundled (scripts/bundle.mjs), which starts faster than tsc's
// hundreds of modules; it is used unless it is missing, older than tsc's output (a `tsc` run
// without the bundle step), or POLLEN_NO_BUNDLE=1 asks for the modules.
import { statSync } from 'node:fs';

const mtime = (file) => statSync(new URL(file, import.meta.url), { throwIfNoEntry: false })?.mtimeMs;
const bundled = mtime('../dist/bundle/pollen.js');
const useBundle =
  process.env.POLLEN_NO_BUNDLE !== '1' &&
  bundled !== undefined &&
  bundled >= (mtime('../dist/cli/main.js') ?? 0);
const { main } = await (useBundle ? import('../dist/bundle/pollen.js') : import('../dist/cli/main.js'));

// `pollen … | head` closes the pipe early: that is not an error.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (e) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });

process.exitCode = await main(process.argv);
