/**
 * `pollen build`: turn an app folder into one deterministic `NAME-VERSION.pollen` bundle.
 *
 * The ServerApp and ClientApp are bundled with esbuild (ESM for Node 20, every dependency
 * inlined so a SuperNode needs no `npm install`; code both share goes to a common chunk). Two
 * things are not inlined:
 * - `pollen/sdk` becomes a shim that reads the runtime's SDK from
 *   `globalThis[Symbol.for('pollen.sdk')]` (set by load-app.ts), so the app's ClientApp,
 *   Message and records are the host's classes and `instanceof` works across the boundary;
 * - files listed in `pollen.assets` (e.g. .wasm binaries) are copied next to the entry files,
 *   where bundled code finds them through `import.meta.url`.
 * Other `pollen/*` imports (e.g. pollen/strategies) are bundled; when the app folder cannot
 * resolve them they come from the Pollen doing the build. The strategies' own imports of the SDK
 * go to the same shim, so the records and messages they make are the host's too.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { build, type Message, type Plugin } from 'esbuild';
import { z } from 'zod';
import { PollenError } from '../errors.js';
import * as hostSdk from '../sdk/index.js';
import { packageFile } from '../util/package-root.js';
import { VERSION } from '../version.js';
import { PYPROJECT_FILE, readPythonApp } from './build-python.js';
import {
  BUNDLE_EXTENSION,
  type BundleFile,
  type BundleManifest,
  compareEntries,
  MANIFEST_FILE,
  manifestBytes,
  readBundle,
  sha256,
  writeTar,
} from './bundle.js';

export const pollenFieldSchema = z.strictObject({
  /** Module whose default export is the ServerApp (relative to the app folder). */
  serverapp: z.string().min(1),
  /** Module whose default export is the ClientApp. */
  clientapp: z.string().min(1),
  /** Default run config. */
  config: z.record(z.string(), z.union([z.number(), z.string(), z.boolean()])).default({}),
  /**
   * Files copied flat next to the entry files: `./path` in the app folder or `package/path`
   * in an installed package; `*` may stand for any characters in the last segment.
   */
  assets: z.array(z.string().min(1)).default([]),
});
export type PollenField = z.infer<typeof pollenFieldSchema>;

const packageSchema = z.object({
  name: z.string().regex(/^(@[a-z0-9._-]+\/)?[a-z0-9._-]+$/, 'must be an npm package name'),
  version: z.string().regex(/^[0-9A-Za-z.+-]+$/, 'must be a version such as 1.0.0'),
  pollen: pollenFieldSchema,
});

export interface BuildOptions {
  /** Where the .pollen file goes (default APP_DIR/dist). */
  outDir?: string;
  /** Minify the JavaScript (smaller bundle, less readable stack traces from sites). */
  minify?: boolean;
}

export interface BuildResult {
  path: string;
  /** `sha256:HEX` of the bundle file. */
  hash: string;
  size: number;
  manifest: BundleManifest;
  warnings: string[];
}

// .mjs: ESM for Node and tools whatever package.json (if any) sits above the extracted folder.
export const SERVER_ENTRY = 'server.mjs';
export const CLIENT_ENTRY = 'client.mjs';

function appInvalid(message: string): PollenError {
  return new PollenError('APP_INVALID', message);
}

function readPackage(appDir: string): z.infer<typeof packageSchema> {
  const file = join(appDir, 'package.json');
  if (!existsSync(file)) throw new PollenError('FILE_NOT_FOUND', `No package.json in ${appDir}`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw appInvalid(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  const parsed = packageSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw appInvalid(`${file}: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/** A path inside the app folder, or APP_INVALID. */
function insideApp(appDir: string, path: string, what: string): string {
  const full = resolve(appDir, path);
  if (isAbsolute(path) || relative(appDir, full).startsWith('..'))
    throw appInvalid(`${what} ${path} must be a relative path inside the app folder`);
  if (!existsSync(full) || !statSync(full).isFile()) throw appInvalid(`${what} ${path} does not exist`);
  return full;
}

/** The folder of an installed package, found as Node would from the app folder. */
function packageDir(appDir: string, name: string): string {
  for (let dir = appDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) throw appInvalid(`Asset package ${name} is not installed`);
  }
}

function collectAssets(appDir: string, specs: readonly string[]): BundleFile[] {
  const out: BundleFile[] = [];
  for (const spec of specs) {
    const segments = spec.split('/');
    const pattern = segments.pop() as string;
    let dir: string;
    if (spec.startsWith('./')) {
      dir = resolve(appDir, ...segments);
      if (relative(appDir, dir).startsWith('..')) throw appInvalid(`Asset ${spec} is outside the app folder`);
    } else {
      const nameParts = spec.startsWith('@') ? 2 : 1;
      if (segments.length < nameParts || segments.includes('..'))
        throw appInvalid(`Asset ${spec}: use ./PATH or PACKAGE/PATH`);
      const pkg = packageDir(appDir, segments.slice(0, nameParts).join('/'));
      dir = join(pkg, ...segments.slice(nameParts));
    }
    const re = new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
    const names = existsSync(dir) ? readdirSync(dir).filter((n) => re.test(n)) : [];
    const files = names.filter((n) => statSync(join(dir, n)).isFile()).sort();
    if (files.length === 0) throw appInvalid(`Asset ${spec} matches no file`);
    for (const n of files) out.push({ path: n, data: readFileSync(join(dir, n)) });
  }
  return out;
}

/** Named exports of the shim: what the SDK of this Pollen exports (checked by esbuild). */
function sdkShim(): string {
  const names = Object.keys(hostSdk).sort();
  return [
    "const sdk = globalThis[Symbol.for('pollen.sdk')];",
    'if (sdk === undefined)',
    "  throw new Error('pollen/sdk is provided by the Pollen runtime: load this app with loadClientApp or loadServerApp');",
    ...names.map((n) => `export const ${n} = sdk.${n};`),
  ].join('\n');
}

/** Whether `file` is a module of Pollen's strategies (`src/` or `dist/` of the package `pollen`). */
function inPollenStrategies(file: string): boolean {
  const dir = dirname(file);
  if (basename(dir) !== 'strategies') return false;
  try {
    return JSON.parse(readFileSync(join(dir, '..', '..', 'package.json'), 'utf8')).name === 'pollen';
  } catch {
    return false;
  }
}

const hostRequire = createRequire(packageFile('package.json'));
const LARGE_JSON = 64 * 1024;

function pollenImports(): Plugin {
  return {
    name: 'pollen-imports',
    setup(b) {
      b.onResolve({ filter: /^pollen\/sdk$/ }, () => ({ path: 'pollen/sdk', namespace: 'pollen-sdk-shim' }));
      b.onResolve({ filter: /^\.\.\/sdk\/index\.js$/ }, (args) =>
        inPollenStrategies(args.importer) ? { path: 'pollen/sdk', namespace: 'pollen-sdk-shim' } : undefined,
      );
      b.onLoad({ filter: /.*/, namespace: 'pollen-sdk-shim' }, () => ({ contents: sdkShim(), loader: 'js' }));
      // V8 parses a large object literal far slower than JSON.parse of a string (13 s against
      // under 1 s for a 21 MB dataset), so big JSON files stay JSON text in the bundle.
      b.onLoad({ filter: /\.json$/ }, (args) => {
        const text = readFileSync(args.path, 'utf8');
        if (text.length < LARGE_JSON) return undefined;
        return {
          contents: `module.exports = JSON.parse(${JSON.stringify(JSON.stringify(JSON.parse(text)))});`,
          loader: 'js',
        };
      });
      b.onResolve({ filter: /^pollen(\/|$)/ }, async (args) => {
        if (args.pluginData === 'fallback') return undefined;
        const own = await b.resolve(args.path, {
          kind: args.kind,
          resolveDir: args.resolveDir,
          importer: args.importer,
          pluginData: 'fallback',
        });
        if (own.errors.length === 0) return own;
        try {
          return { path: hostRequire.resolve(args.path) };
        } catch {
          return undefined; // esbuild reports the unresolved import
        }
      });
    },
  };
}

/**
 * ESM output has no require/__dirname/__filename, which bundled CommonJS code (and Emscripten's
 * loader, to find its .wasm) uses: define them per output file. Private names, so they cannot
 * clash with the app's own top-level names; esbuild renames the app's own `require`.
 */
const BANNER = [
  "import { createRequire as __pollen_createRequire } from 'node:module';",
  "import { dirname as __pollen_pathDirname } from 'node:path';",
  "import { fileURLToPath as __pollen_fileURLToPath } from 'node:url';",
  'const require = __pollen_createRequire(import.meta.url);',
  'const __pollen_filename = __pollen_fileURLToPath(import.meta.url);',
  'const __pollen_dirname = __pollen_pathDirname(__pollen_filename);',
].join('\n');

function formatMessages(messages: readonly Message[]): string {
  return messages
    .slice(0, 10)
    .map((m) => (m.location ? `${m.location.file}:${m.location.line}: ${m.text}` : m.text))
    .join('; ');
}

async function bundleCode(
  appDir: string,
  field: PollenField,
  minify: boolean,
): Promise<{ files: BundleFile[]; warnings: string[] }> {
  const outdir = join(appDir, '.pollen-build');
  try {
    const result = await build({
      absWorkingDir: appDir,
      entryPoints: [
        { in: insideApp(appDir, field.serverapp, 'serverapp'), out: SERVER_ENTRY.replace(/\.mjs$/, '') },
        { in: insideApp(appDir, field.clientapp, 'clientapp'), out: CLIENT_ENTRY.replace(/\.mjs$/, '') },
      ],
      outdir,
      write: false,
      bundle: true,
      splitting: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      chunkNames: 'chunk-[hash]',
      outExtension: { '.js': '.mjs' },
      minify,
      minifyWhitespace: true,
      legalComments: 'eof',
      sourcemap: false,
      banner: { js: BANNER },
      define: { __dirname: '__pollen_dirname', __filename: '__pollen_filename' },
      plugins: [pollenImports()],
      logLevel: 'silent',
    });
    return {
      files: result.outputFiles.map((f) => ({
        path: relative(outdir, f.path).split(sep).join('/'),
        data: f.contents,
      })),
      warnings: result.warnings.map((w) => formatMessages([w])),
    };
  } catch (e) {
    const errors = (e as { errors?: Message[] }).errors;
    if (errors === undefined) throw e;
    throw new PollenError('APP_BUILD_FAILED', `The app does not build: ${formatMessages(errors)}`);
  }
}

/** Build the app in `appDir` into `OUT_DIR/NAME-VERSION.pollen`; the same inputs give the same bytes. */
export async function buildApp(appDir: string, options: BuildOptions = {}): Promise<BuildResult> {
  const dir = resolve(appDir);
  // A Python app declares itself in pyproject.toml (package.json, if both exist, wins as before).
  if (!existsSync(join(dir, 'package.json')) && existsSync(join(dir, PYPROJECT_FILE))) {
    const app = readPythonApp(dir);
    return writeBundleFile(dir, app.manifest, app.files, options, []);
  }
  const pkg = readPackage(dir);
  const code = await bundleCode(dir, pkg.pollen, options.minify ?? false);
  const files = [...code.files, ...collectAssets(dir, pkg.pollen.assets)];
  // Key order is the manifest schema's: readBundle requires the canonical text.
  const manifest: ManifestFields = {
    format: 1,
    name: pkg.name,
    version: pkg.version,
    serverapp: SERVER_ENTRY,
    clientapp: CLIENT_ENTRY,
    config: pkg.pollen.config,
  };
  return writeBundleFile(dir, manifest, files, options, code.warnings);
}

/** The manifest without what the files give (the SDK version and the file list). */
export type ManifestFields = Omit<BundleManifest, 'sdkVersion' | 'files'>;

/** Sort the files, write the canonical bundle into the output folder and read it back. */
function writeBundleFile(
  dir: string,
  fields: ManifestFields,
  unsorted: BundleFile[],
  options: BuildOptions,
  warnings: string[],
): BuildResult {
  const files = [...unsorted].sort((a, b) => compareEntries(a.path, b.path));
  for (let i = 0; i < files.length; i++) {
    const path = files[i]?.path as string;
    if (path === MANIFEST_FILE || files[i + 1]?.path === path)
      throw appInvalid(`Two files would be called ${path} in the bundle: rename an asset`);
  }
  const manifest: BundleManifest = {
    ...fields,
    sdkVersion: VERSION,
    files: files.map((f) => ({ path: f.path, size: f.data.length, sha256: sha256(f.data) })),
  };
  const bytes = writeTar([{ path: MANIFEST_FILE, data: manifestBytes(manifest) }, ...files]);
  const { hash } = readBundle(bytes); // the reader must accept what the builder writes
  const outDir = resolve(options.outDir ?? join(dir, 'dist'));
  const path = join(
    outDir,
    `${manifest.name.replace(/^@/, '').replace('/', '-')}-${manifest.version}${BUNDLE_EXTENSION}`,
  );
  mkdirSync(outDir, { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
  return { path, hash, size: bytes.length, manifest, warnings };
}
