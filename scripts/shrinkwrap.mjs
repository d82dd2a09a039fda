#!/usr/bin/env node
// `npm pack` (prepack) ships package-lock.json as npm-shrinkwrap.json, so `npm install -g
// pollen-*.tgz` installs the dependency versions Pollen was tested with, from the npm cache when
// offline; postpack (`--remove`) takes it away again, since in the clone it would override the lockfile.
import { copyFileSync, rmSync } from 'node:fs';

if (process.argv.includes('--remove')) rmSync('npm-shrinkwrap.json', { force: true });
else copyFileSync('package-lock.json', 'npm-shrinkwrap.json');
