import { createRequire } from 'node:module';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
/** The package version, read from package.json so there is one source of truth. */
export const VERSION: string = pkg.version;
