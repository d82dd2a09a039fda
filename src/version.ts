import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);
const pkg = require('../package.json') as { version: string };
/** The package version, read from package.json so there is one source of truth. */
export const VERSION: string = pkg.version;
/** The folder of this Pollen (a clone or an installed package): its package.json, bin/, templates/. */
export const PACKAGE_DIR: string = dirname(require.resolve('../package.json'));
