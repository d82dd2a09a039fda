/**
 * Loading an app module: its default export or its `app`; a module without one is refused with
 * APP_EXPORT_MISSING naming what it exports instead, and the ClientApp runner turns that refusal
 * into the error reply every instruction of the run gets on that node.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollenErrorOf } from '../../test/support/errors.js';
import { PollenError } from '../errors.js';
import { ClientApp, ServerApp } from '../sdk/app.js';
import { refusalOf } from './clientapp-runner.js';
import { appExport, loadClientApp, loadServerApp } from './load-app.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-load-app-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let modules = 0;
/** A module file with `code` (the host SDK is `sdk`, as the build's shim gives it); its path. */
function moduleOf(code: string): string {
  const path = join(dir, `m${modules++}.mjs`);
  writeFileSync(path, `const sdk = globalThis[Symbol.for('pollen.sdk')];\n${code}\n`);
  return path;
}

const isClientApp = (v: unknown): v is ClientApp => v instanceof ClientApp;

/** The refusal of a module with exports `mod`. */
const refused = (mod: Record<string, unknown>) =>
  pollenErrorOf((async () => appExport(mod, 'ClientApp', isClientApp))());

describe('appExport', () => {
  it('takes the default export, or the export `app` as Flower names it', () => {
    const a = new ClientApp();
    const b = new ClientApp();
    expect(appExport({ default: a }, 'ClientApp', isClientApp)).toBe(a);
    expect(appExport({ app: b, helper: 1 }, 'ClientApp', isClientApp)).toBe(b);
    expect(appExport({ default: a, app: b }, 'ClientApp', isClientApp)).toBe(a);
    // A default export of something else does not hide a good `app`.
    expect(appExport({ default: () => {}, app: b }, 'ClientApp', isClientApp)).toBe(b);
  });

  it('refuses a module without its app, saying what it exports and how to export the app', async () => {
    const none = await refused({ train: () => {}, model: {} });
    expect(none.code).toBe('APP_EXPORT_MISSING');
    expect(none.message).toBe(
      'The ClientApp module exports no ClientApp: it has no default export and no `app` (it exports train, model)',
    );
    expect(none.hint).toContain('pollen.clientapp');
    expect(none.hint).toContain('`export default new ClientApp({ train })`');
    expect((await refused({})).message).toContain('(it exports nothing)');
    expect((await refused({ default: new ServerApp() })).message).toBe(
      'The ClientApp module exports no ClientApp: its default export is a ServerApp',
    );
    expect((await refused({ default: () => {}, app: 'x' })).message).toBe(
      'The ClientApp module exports no ClientApp: its default export is a function, `app` is a string',
    );
    expect((await refused({ default: null })).message).toContain('its default export is null');
    expect((await refused({ default: { train: 1 } })).message).toContain('its default export is an object');
  });
});

describe('loadClientApp / loadServerApp', () => {
  it('loads the app of a bundled module through the host SDK', async () => {
    const app = await loadClientApp(moduleOf('export const app = new sdk.ClientApp({ train: () => {} });'));
    expect(app).toBeInstanceOf(ClientApp);
    expect(app.messageTypes).toEqual(['train']);
    expect(await loadServerApp(moduleOf('export default new sdk.ServerApp(async () => {});'))).toBeInstanceOf(
      ServerApp,
    );
  });

  it('refuses a module that exports no app (APP_EXPORT_MISSING) or throws while loading (APP_LOAD_FAILED)', async () => {
    const missing = await pollenErrorOf(loadClientApp(moduleOf('export function train() {}')));
    expect([missing.code, missing.message]).toEqual([
      'APP_EXPORT_MISSING',
      'The ClientApp module exports no ClientApp: it has no default export and no `app` (it exports train)',
    ]);
    const server = await pollenErrorOf(loadServerApp(moduleOf('export default new sdk.ClientApp();')));
    expect(server.message).toBe(
      'The ServerApp module exports no ServerApp: its default export is a ClientApp',
    );
    expect(server.hint).toContain('pollen.serverapp');
    const thrown = await pollenErrorOf(loadClientApp(moduleOf("throw new Error('no data folder');")));
    expect([thrown.code, thrown.message]).toEqual([
      'APP_LOAD_FAILED',
      'The ClientApp module could not be loaded: no data folder',
    ]);
  });
});

describe('refusalOf', () => {
  it('puts the code, the message and the hint in the error reply, clipped', () => {
    const e = new PollenError('APP_EXPORT_MISSING', 'The ClientApp module exports no ClientApp', {
      hint: 'Export it.',
    });
    expect(refusalOf(e)).toEqual({
      code: 'APP_EXPORT_MISSING',
      reason: 'The ClientApp module exports no ClientApp. Export it.',
    });
    const long = refusalOf(new PollenError('APP_LOAD_FAILED', 'x'.repeat(5000)));
    expect(long.reason).toHaveLength(1000);
    expect(refusalOf(new TypeError('secret')).code).toBe('INTERNAL');
  });
});
