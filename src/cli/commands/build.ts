import type { Command } from 'commander';
import { action, lazy } from '../command.js';

const build = lazy(() => import('../build/build.js'), 'build');

const HELP = `
The app folder's package.json names the apps and their default run config:
  "pollen": { "serverapp": "src/server.ts", "clientapp": "src/client.ts",
              "config": { "num-rounds": 3 }, "assets": ["some-package/dist/*.wasm"] }

Both apps are bundled with all their dependencies (SuperNodes install nothing); pollen/sdk is
provided by the Pollen that runs them. The bundle NAME-VERSION.pollen is a plain ustar archive
(tar -tvf lists it) with a manifest, pollen.json, holding each file's SHA-256. Building the same
sources twice gives the same bytes, so the hash identifies the app.

Global option: --json prints the result (or the error) as JSON.

Examples:
  pollen build examples/mnist
  pollen build . --out build --json`;

export function registerBuild(program: Command): void {
  program
    .command('build [APP_DIR]')
    .description('bundle an app (ServerApp, ClientApp, dependencies, assets) into one .pollen file')
    .option('-o, --out <DIR>', 'folder for the .pollen file (default APP_DIR/dist)')
    .option('--minify', 'minify the JavaScript (smaller; stack traces from sites are harder to read)')
    .addHelpText('after', HELP)
    .action(
      action<{ out?: string; minify?: boolean }>((o, out, [appDir = '.']) => build({ ...o, appDir }, out)),
    );
}
