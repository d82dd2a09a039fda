/**
 * Load a bundled app. Bundles do not carry their own copy of `pollen/sdk`: `pollen build` turns
 * that import into a read of the host's SDK (see sdk-shim.ts), so the app's ClientApp, Message
 * and records are the host's classes and pass `instanceof` checks.
 */
import { pathToFileURL } from 'node:url';
import { PollenError } from '../errors.js';
import { ClientApp, ServerApp } from '../sdk/app.js';
import * as sdk from '../sdk/index.js';

export const SDK_GLOBAL = Symbol.for('pollen.sdk');

export function provideSdk(): void {
  (globalThis as Record<symbol, unknown>)[SDK_GLOBAL] = sdk;
}

async function load(path: string, what: string): Promise<unknown> {
  provideSdk();
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(path).href);
  } catch (e) {
    throw new PollenError(
      'APP_LOAD_FAILED',
      `The ${what} could not be loaded: ${e instanceof Error ? e.message : e}`,
      {
        cause: e,
      },
    );
  }
  if (mod.default === undefined)
    throw new PollenError('APP_LOAD_FAILED', `The ${what} module has no default export`, {
      hint: `Export the app: \`export default new ${what}(...)\`.`,
    });
  return mod.default;
}

export async function loadServerApp(path: string): Promise<ServerApp> {
  const app = await load(path, 'ServerApp');
  if (!(app instanceof ServerApp))
    throw new PollenError('APP_LOAD_FAILED', 'The serverapp module must export default a ServerApp');
  return app;
}

export async function loadClientApp(path: string): Promise<ClientApp> {
  const app = await load(path, 'ClientApp');
  if (!(app instanceof ClientApp))
    throw new PollenError('APP_LOAD_FAILED', 'The clientapp module must export default a ClientApp');
  return app;
}
