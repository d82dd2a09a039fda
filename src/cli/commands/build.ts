import type { Command } from 'commander';
import { action, lazy } from '../command.js';

const build = lazy(() => import('../build/build.js'), 'build');

const HELP = `
The app folder's package.json names the apps and their default run config:
  "pollen": { "serverapp": "src/server.ts", "clientapp": "src/client.ts",
              "config": { "num-rounds": 3 }, "assets": ["some-package/dist/*.wasm"] }

A Python app is a folder with pyproject.toml instead (docs/python.md):
  [project] name, version, dependencies = ["torch>=1.13"]   (checked at the site, never installed)
  [tool.pollen.app.components] serverapp = "my_app.server_app:app" (or "pollen:FedAvg"),
                               clientapp = "my_app.client_app:app"
  [tool.pollen.app.config] num-server-rounds = 3
  [tool.pollen.app] exclude = ["data"]   (dist/, __pycache__, .git, .venv and *.pyc always are)
Its files go into the bundle as they are.

TypeScript apps are bundled with all their dependencies (SuperNodes install nothing); pollen/sdk is
provided by the Pollen that runs them. The bundle NAME-VERSION.pollen is a plain ustar archive
(tar -tvf lists it) with a manifest, pollen.json, holding each file's SHA-256. Building the same
sources twice gives the same bytes, so the hash identifies the app.

Global option: --json prints the result (or the error) as JSON.

Examples:
  pollen build examples/mnist
  pollen build examples/pytorch-mnist
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
