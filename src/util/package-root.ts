/**
 * Files of this Pollen package (a clone or an installed copy): its package.json, bin/, templates/,
 * examples/, sdk/python and the scripts it starts as processes. Found from the package's root,
 * never from a module's own depth: the CLI also runs bundled (dist/bundle/), where the
 * `import.meta.url` of a module is that of the bundle's file it was put in.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(import.meta.url);

/** Whether this code runs from the TypeScript sources (tsx, vitest), not from a build in dist/. */
export const FROM_SOURCE: boolean = HERE.endsWith('.ts');

let root: string | undefined;

/** The package's folder: the nearest one above this code whose package.json is named `pollen`. */
export function packageDir(): string {
  if (root !== undefined) return root;
  for (let dir = dirname(HERE); ; dir = dirname(dir)) {
    if (packageName(join(dir, 'package.json')) === 'pollen') {
      root = dir;
      return dir;
    }
    if (dirname(dir) === dir) throw new Error(`No package.json named pollen above ${HERE}`);
  }
}

function packageName(file: string): unknown {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name;
  } catch {
    return undefined; // no package.json here (or not one we can read): look further up
  }
}

/** A path inside the package, e.g. `packageFile('templates', 'fedavg')`. */
export function packageFile(...parts: string[]): string {
  return join(packageDir(), ...parts);
}

/**
 * A module of Pollen's own tree as a file to start in its own process, e.g. `ownScript('apps/runner')`:
 * src/apps/runner.ts from the sources (run it through tsx), dist/apps/runner.js from a build
 * (tsc's modules and the bundle alike, which keeps tsc's output beside it).
 */
export function ownScript(module: string): string {
  return FROM_SOURCE ? packageFile('src', `${module}.ts`) : packageFile('dist', `${module}.js`);
}
