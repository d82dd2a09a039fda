import { relative } from 'node:path';
import type { Command } from 'commander';
import { buildApp } from '../../apps/build.js';
import { action } from '../command.js';
import { bold, dim, ok } from '../output.js';

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

/** Relative to the working folder when inside it, else absolute. */
function shortPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' || rel.startsWith('..') ? path : rel;
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function registerBuild(program: Command): void {
  program
    .command('build [APP_DIR]')
    .description('bundle an app (ServerApp, ClientApp, dependencies, assets) into one .pollen file')
    .option('-o, --out <DIR>', 'folder for the .pollen file (default APP_DIR/dist)')
    .option('--minify', 'minify the JavaScript (smaller; stack traces from sites are harder to read)')
    .addHelpText('after', HELP)
    .action(
      action<{ out?: string; minify?: boolean }>(async (o, out, args) => {
        const appDir = args[0] ?? '.';
        out.progress(`building ${appDir}`);
        const built = await buildApp(appDir, {
          ...(o.out !== undefined && { outDir: o.out }),
          ...(o.minify && { minify: true }),
        });
        for (const w of built.warnings) out.warn(w);
        const result = {
          path: built.path,
          hash: built.hash,
          size: built.size,
          name: built.manifest.name,
          version: built.manifest.version,
          serverapp: built.manifest.serverapp,
          clientapp: built.manifest.clientapp,
          sdkVersion: built.manifest.sdkVersion,
          config: built.manifest.config,
          files: built.manifest.files,
          warnings: built.warnings,
        };
        out.result(result, (r) => [
          `${ok('built')} ${bold(shortPath(r.path))} (${mb(r.size)})`,
          `  hash ${r.hash}`,
          ...r.files.map((f) => dim(`  ${String(f.size).padStart(10)}  ${f.path}`)),
        ]);
      }),
    );
}
