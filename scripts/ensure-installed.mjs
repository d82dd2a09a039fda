#!/usr/bin/env node
// Makes `npm run demo` and `npm test` work on a fresh clone: installs dependencies (npm ci)
// when node_modules is missing or older than package-lock.json, and builds dist/ when missing.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';

const run = (cmd, args) => {
  process.stderr.write(`$ ${cmd} ${args.join(' ')}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);

if (mtime('node_modules/.package-lock.json') < mtime('package-lock.json'))
  run('npm', ['ci', '--no-audit', '--no-fund']);
else if (!existsSync('dist/cli/main.js')) run('npx', ['tsc', '-p', 'tsconfig.build.json']);
