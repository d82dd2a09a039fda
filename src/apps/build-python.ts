/**
 * A Python app for `pollen build`: a folder with `pyproject.toml` in Flower's shape.
 *
 * ```toml
 * [project]
 * name = "pytorch-mnist"
 * version = "1.0.0"
 * dependencies = ["torch>=1.13"]          # checked at the site, never installed by Pollen
 * [tool.pollen.app]
 * exclude = ["data/raw"]                  # more than dist/, __pycache__, .git, .venv, *.pyc
 * [tool.pollen.app.components]
 * serverapp = "pytorch_mnist.server_app:app"   # or pollen:FedAvg / pollen:FedProx (built in)
 * clientapp = "pytorch_mnist.client_app:app"
 * [tool.pollen.app.config]
 * num-server-rounds = 3
 * ```
 *
 * The bundle holds every file of the folder but those left out, as they are (no compilation):
 * the SuperNode runs them with the site's interpreter.
 */
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { PollenError } from '../errors.js';
import type { ManifestFields } from './build.js';
import { BUILTIN_SERVERAPPS, builtinServerAppName } from './builtin-names.js';
import { type BundleFile, isSafePath, MAX_BUNDLE_BYTES, MAX_BUNDLE_FILES, PYTHON_REF } from './bundle.js';

export const PYPROJECT_FILE = 'pyproject.toml';
/** Never in a bundle: build output, caches, version control, virtual environments. */
const ALWAYS_EXCLUDED = ['dist', '__pycache__', '.git', '.venv', '.pollen-build', '*.pyc'];
/** PEP 508 distribution name at the start of a requirement. */
const REQUIREMENT = /^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(?:[<>=!~;(@]|$)/;
const VERSION = /^[0-9A-Za-z.+!-]+$/;

export interface PythonApp {
  manifest: ManifestFields;
  files: BundleFile[];
}

function invalid(file: string, key: string, message: string): PollenError {
  return new PollenError('APP_INVALID', `${file}: ${key}: ${message}`, {
    hint: `Fix ${key} in pyproject.toml (docs/python.md shows the shape: [project] name, version, dependencies; [tool.pollen.app.components] serverapp, clientapp; [tool.pollen.app.config]), then build again.`,
  });
}

type Table = Record<string, unknown>;
const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v);

function table(parent: Table, key: string, path: string, file: string): Table {
  const v = parent[key];
  if (v === undefined) return {};
  if (!isTable(v)) throw invalid(file, `[${path}]`, 'must be a table');
  return v;
}

function strings(v: unknown, file: string, key: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string'))
    throw invalid(file, key, 'must be a list of strings');
  return v as string[];
}

function onlyKeys(t: Table, allowed: readonly string[], file: string, path: string): void {
  for (const k of Object.keys(t))
    if (!allowed.includes(k))
      throw invalid(file, `[${path}] ${k}`, `unknown key (known: ${allowed.join(', ')})`);
}

/** The module file a reference names (`a.b:app` → a/b.py or a/b/__init__.py), if in the bundle. */
function moduleFile(ref: string, paths: ReadonlySet<string>): string | undefined {
  const base = ref.slice(0, ref.indexOf(':')).split('.').join('/');
  return [`${base}.py`, `${base}/__init__.py`].find((p) => paths.has(p));
}

function component(
  components: Table,
  kind: 'serverapp' | 'clientapp',
  file: string,
  paths: ReadonlySet<string>,
): string {
  const key = `[tool.pollen.app.components] ${kind}`;
  const ref = components[kind];
  if (typeof ref !== 'string') throw invalid(file, key, 'is missing (e.g. "my_app.client_app:app")');
  const name = builtinServerAppName(ref);
  if (name !== undefined) {
    if (kind === 'clientapp' || !(BUILTIN_SERVERAPPS as readonly string[]).includes(name))
      throw invalid(
        file,
        key,
        kind === 'clientapp'
          ? `${ref}: Pollen has built-in ServerApps only; the ClientApp is the app's own module`
          : `${ref}: no such built-in ServerApp (${BUILTIN_SERVERAPPS.map((n) => `pollen:${n}`).join(', ')})`,
      );
    return ref;
  }
  if (!PYTHON_REF.test(ref))
    throw invalid(file, key, `${JSON.stringify(ref)} is not a reference module.path:attr`);
  if (moduleFile(ref, paths) === undefined)
    throw invalid(file, key, `${ref}: no module ${ref.slice(0, ref.indexOf(':'))} in the app folder`);
  return ref;
}

function runConfig(config: Table, file: string): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(config)) {
    const value = typeof v === 'bigint' && Number.isSafeInteger(Number(v)) ? Number(v) : v;
    if (typeof value !== 'number' && typeof value !== 'string' && typeof value !== 'boolean')
      throw invalid(file, `[tool.pollen.app.config] ${k}`, 'must be a number, a string or a boolean');
    out[k] = value;
  }
  return out;
}

/** `*` within a segment, `**` across segments; a pattern without `/` matches any segment's name. */
function globRegExp(pattern: string): RegExp {
  const p = pattern.replace(/^\.\//, '').replace(/\/$/, '');
  const body = p
    .split(/(\*\*|\*)/)
    .map((part) =>
      part === '**' ? '.*' : part === '*' ? '[^/]*' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('');
  return new RegExp(p.includes('/') ? `^${body}$` : `(^|/)${body}$`);
}

/** Every regular file under `dir` (relative paths with `/`) not excluded, in a stable order. */
function collectFiles(dir: string, exclude: readonly string[], file: string): BundleFile[] {
  const patterns = [...ALWAYS_EXCLUDED, ...exclude].map(globRegExp);
  const out: BundleFile[] = [];
  let bytes = 0;
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      if (patterns.some((re) => re.test(path))) continue;
      const stat = lstatSync(join(dir, path));
      if (stat.isDirectory()) {
        walk(path);
        continue;
      }
      if (!stat.isFile())
        throw invalid(
          file,
          path,
          'is not a regular file (a link?): bundles hold regular files; list it in [tool.pollen.app] exclude',
        );
      if (!isSafePath(path))
        throw invalid(
          file,
          path,
          'cannot be in a bundle (letters, digits and ._@+- only, 100 bytes at most): rename it or list it in [tool.pollen.app] exclude',
        );
      bytes += stat.size;
      if (out.length + 1 >= MAX_BUNDLE_FILES || bytes > MAX_BUNDLE_BYTES)
        throw invalid(
          file,
          path,
          `the app folder holds more than a bundle takes (${MAX_BUNDLE_FILES} files, ${MAX_BUNDLE_BYTES} bytes): list data folders in [tool.pollen.app] exclude`,
        );
      out.push({ path, data: readFileSync(join(dir, path)) });
    }
  };
  walk('');
  return out;
}

interface Project {
  file: string;
  doc: Table;
  name: string;
  version: string;
  requirements: string[];
}

/** `dir/pyproject.toml`, parsed, with its checked `[project]` name, version and dependencies. */
function readProject(dir: string): Project {
  const file = join(dir, PYPROJECT_FILE);
  if (!existsSync(file)) throw new PollenError('FILE_NOT_FOUND', `No ${PYPROJECT_FILE} in ${dir}`);
  let doc: Table;
  try {
    doc = parse(readFileSync(file, 'utf8')) as Table;
  } catch (e) {
    throw invalid(file, '(file)', `not valid TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  const project = table(doc, 'project', 'project', file);
  const { name, version } = project;
  if (typeof name !== 'string' || !/^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/.test(name))
    throw invalid(file, '[project] name', 'must be a project name such as "pytorch-mnist"');
  if (typeof version !== 'string' || !VERSION.test(version))
    throw invalid(file, '[project] version', 'must be a version such as "1.0.0"');
  const requirements = strings(project.dependencies, file, '[project] dependencies').map((r) => r.trim());
  for (const r of requirements) checkRequirement(r, file, '[project] dependencies');
  return { file, doc, name, version, requirements };
}

function checkRequirement(r: string, file: string, key: string): void {
  if (!REQUIREMENT.test(r))
    throw invalid(file, key, `${JSON.stringify(r)} is not a requirement such as "numpy>=1.24"`);
}

/** The requirements a Python app declares (`[project] dependencies` of its pyproject.toml). */
export function pythonRequirements(dir: string): string[] {
  return readProject(dir).requirements;
}

/**
 * A pip requirements file (`requirements.txt`): one requirement a line, `#` comments. Options
 * (`-r`, `--index-url` …) are refused: the check reads requirements, not pip's settings.
 */
export function readRequirementsFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new PollenError('FILE_NOT_FOUND', `Cannot read the requirements file ${path}`, { cause: e });
  }
  const out: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') return;
    const where = `line ${i + 1}`;
    if (line.startsWith('-'))
      throw new PollenError('APP_INVALID', `${path}: ${where}: ${line}: pip options are not read here`, {
        hint: 'List the requirements themselves (name and version, e.g. torch>=1.13), one a line.',
      });
    checkRequirement(line, path, where);
    out.push(line);
  });
  return out;
}

/** Read and check `dir/pyproject.toml` and collect the app's files. */
export function readPythonApp(dir: string): PythonApp {
  const { file, doc, name, version, requirements } = readProject(dir);
  const app = table(
    table(table(doc, 'tool', 'tool', file), 'pollen', 'tool.pollen', file),
    'app',
    'tool.pollen.app',
    file,
  );
  onlyKeys(app, ['components', 'config', 'exclude', 'publisher'], file, 'tool.pollen.app');
  const files = collectFiles(dir, strings(app.exclude, file, '[tool.pollen.app] exclude'), file);
  const paths = new Set(files.map((f) => f.path));
  const components = table(app, 'components', 'tool.pollen.app.components', file);
  onlyKeys(components, ['serverapp', 'clientapp'], file, 'tool.pollen.app.components');
  const serverapp = component(components, 'serverapp', file, paths);
  const clientapp = component(components, 'clientapp', file, paths);
  const config = runConfig(table(app, 'config', 'tool.pollen.app.config', file), file);
  const initial = config['initial-arrays'];
  if (
    builtinServerAppName(serverapp) !== undefined &&
    initial !== undefined &&
    (typeof initial !== 'string' || !paths.has(initial))
  )
    throw invalid(
      file,
      '[tool.pollen.app.config] initial-arrays',
      `${JSON.stringify(initial)} is not a file of the app folder (an .npz the built-in ServerApp starts from)`,
    );
  // Key order is the manifest schema's: readBundle requires the canonical text.
  const manifest: ManifestFields = {
    format: 1,
    name,
    version,
    runtime: 'python',
    serverapp,
    clientapp,
    requirements,
    config,
  };
  return { manifest, files };
}
