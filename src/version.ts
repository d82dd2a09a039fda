import { readFileSync } from 'node:fs';
import { packageDir, packageFile } from './util/package-root.js';

/** The package version, read from package.json so there is one source of truth. */
export const VERSION: string = (
  JSON.parse(readFileSync(packageFile('package.json'), 'utf8')) as { version: string }
).version;
/** The folder of this Pollen (a clone or an installed package): its package.json, bin/, templates/. */
export const PACKAGE_DIR: string = packageDir();
