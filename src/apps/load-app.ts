/**
 * Load a bundled app. Bundles do not carry their own copy of `pollen/sdk`: `pollen build` turns
 * that import into a read of the host's SDK (see sdk-shim.ts), so the app's ClientApp, Message
 * and records are the host's classes and pass `instanceof` checks.
 *
 * The app is the module's default export or, as Flower apps name it (`client:app`), its export
 * `app`. A module without one is refused with APP_EXPORT_MISSING, saying what it does export.
 */
import { pathToFileURL } from 'node:url';
import { PollenError } from '../errors.js';
import { ClientApp, ServerApp } from '../sdk/app.js';
import * as sdk from '../sdk/index.js';

export const SDK_GLOBAL = Symbol.for('pollen.sdk');

export function provideSdk(): void {
  (globalThis as Record<symbol, unknown>)[SDK_GLOBAL] = sdk;
}

type AppKind = 'ServerApp' | 'ClientApp';

/** Where each kind is declared, and how its app is written: the hint of APP_EXPORT_MISSING. */
const EXAMPLE: Record<AppKind, { field: string; create: string }> = {
  ClientApp: { field: 'pollen.clientapp', create: 'new ClientApp({ train })' },
  ServerApp: { field: 'pollen.serverapp', create: 'new ServerApp(async (grid, context) => …)' },
};

/** The export names looked at, in order. */
const APP_EXPORTS = ['default', 'app'] as const;

async function importModule(path: string, what: AppKind): Promise<Record<string, unknown>> {
  provideSdk();
  try {
    return await import(pathToFileURL(path).href);
  } catch (e) {
    throw new PollenError(
      'APP_LOAD_FAILED',
      `The ${what} module could not be loaded: ${e instanceof Error ? e.message : e}`,
      { cause: e },
    );
  }
}

/** What a value is, for a message: "a ServerApp", "a function", "undefined". */
function describeValue(v: unknown): string {
  if (v === undefined || v === null) return String(v);
  if (typeof v === 'function') return 'a function';
  if (typeof v !== 'object') return `a ${typeof v}`;
  const name = (Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null)?.constructor?.name;
  return name && name !== 'Object' ? `a ${name}` : 'an object';
}

/** The module's app of kind `what`, or APP_EXPORT_MISSING saying what the module exports instead. */
export function appExport<T>(mod: Record<string, unknown>, what: AppKind, isApp: (v: unknown) => v is T): T {
  const present = APP_EXPORTS.filter((name) => mod[name] !== undefined);
  for (const name of present) if (isApp(mod[name])) return mod[name] as T;
  const others = Object.keys(mod).filter((name) => !(APP_EXPORTS as readonly string[]).includes(name));
  const detail =
    present.length > 0
      ? present
          .map(
            (name) => `${name === 'default' ? 'its default export' : '`app`'} is ${describeValue(mod[name])}`,
          )
          .join(', ')
      : `it has no default export and no \`app\` (${others.length > 0 ? `it exports ${others.slice(0, 10).join(', ')}` : 'it exports nothing'})`;
  const { field, create } = EXAMPLE[what];
  throw new PollenError('APP_EXPORT_MISSING', `The ${what} module exports no ${what}: ${detail}`, {
    hint: `Export it from the file package.json names as ${field}: \`export default ${create}\` (or \`export const app = …\`), then start the run again.`,
  });
}

export async function loadServerApp(path: string): Promise<ServerApp> {
  const mod = await importModule(path, 'ServerApp');
  return appExport(mod, 'ServerApp', (v): v is ServerApp => v instanceof ServerApp);
}

export async function loadClientApp(path: string): Promise<ClientApp> {
  const mod = await importModule(path, 'ClientApp');
  return appExport(mod, 'ClientApp', (v): v is ClientApp => v instanceof ClientApp);
}
