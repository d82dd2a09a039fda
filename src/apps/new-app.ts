/**
 * `pollen new`: a new app folder from a template, as Flower's `flwr new` makes one.
 *
 * A template is a folder `templates/ID` of this Pollen, copied as it is, with placeholders in
 * its text: `{{name}}` (the app's name), `{{module}}` (its Python package name, also in file
 * paths) and `{{pollen-dir}}` (this Pollen's folder, so the app's `npm install` links the SDK
 * that runs it and never fetches the unrelated `pollen` package of the npm registry). A file
 * called `_NAME` (one underscore) is written as `.NAME`, because npm leaves files such as `.gitignore` out of a
 * package. Each template says in APP_TEMPLATES what it is; a new one is a new folder and a new
 * entry.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { PollenError } from '../errors.js';
import { PACKAGE_DIR } from '../version.js';

export interface AppTemplate {
  /** One line for `pollen new --help` and errors. */
  description: string;
  /** TypeScript apps are npm packages; Python apps are pyproject.toml folders. */
  language: 'typescript' | 'python';
  /** What the app imports besides pollen: an app's own package must not shadow it. */
  imports?: readonly string[];
}

/** The templates `pollen new --template ID` offers; each is the folder templates/ID. */
export const APP_TEMPLATES: Readonly<Record<string, AppTemplate>> = Object.freeze({
  ts: {
    description: 'TypeScript: logistic regression on synthetic data, trained with FedAvg',
    language: 'typescript',
  },
  numpy: {
    description: 'Python, NumPy: logistic regression on synthetic data, trained with FedAvg',
    language: 'python',
    imports: ['numpy'],
  },
  pytorch: {
    description: 'Python, PyTorch: a small network on synthetic data, trained with FedAvg (GPU if given)',
    language: 'python',
    imports: ['torch', 'numpy'],
  },
});

export const DEFAULT_TEMPLATE = 'ts';

export interface NewAppOptions {
  /** The app's name: its folder and its npm package name. */
  name: string;
  /** A key of APP_TEMPLATES. */
  template: string;
  /** The folder the app's folder is made in. */
  parentDir: string;
}

export interface NewApp {
  /** The app's folder (absolute). */
  dir: string;
  name: string;
  template: string;
  language: AppTemplate['language'];
  /** The files written, relative to `dir`, in the order written. */
  files: string[];
}

/** An npm package name without a scope (the folder takes the name, so no `/`). */
const APP_NAME = /^[a-z0-9][a-z0-9._-]*$/;
const MAX_NAME_LENGTH = 214;

function invalid(message: string, hint: string): PollenError {
  return new PollenError('INVALID_ARGUMENT', message, { hint });
}

function templateList(): string {
  return Object.entries(APP_TEMPLATES)
    .map(([id, t]) => `${id} (${t.description})`)
    .join(', ');
}

/** INVALID_ARGUMENT unless `name` can be the app's folder and npm package name. */
export function checkAppName(name: string): void {
  if (!APP_NAME.test(name) || name.length > MAX_NAME_LENGTH)
    throw invalid(
      `"${name}" cannot name an app`,
      'Use lowercase letters, digits, ".", "_" and "-", starting with a letter or digit (it becomes the folder and the npm package name), e.g. my-app.',
    );
  if (name === 'pollen')
    throw invalid(
      'An app cannot be called "pollen": that is the name of the SDK it depends on',
      'Choose another name, e.g. pollen-app.',
    );
}

/** Python's keywords: none can name a package. */
const PYTHON_KEYWORDS = new Set(
  'False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield'.split(
    ' ',
  ),
);

/** The app's Python package: its name with `-` and `.` as `_` (`my-app` → `my_app`). */
export function pythonModuleName(name: string, template: AppTemplate): string {
  const module = name.replace(/[-.]/g, '_');
  if (/^[0-9]/.test(module) || PYTHON_KEYWORDS.has(module) || template.imports?.includes(module))
    throw invalid(
      `"${name}" cannot name a Python app: its package ${module} would ${/^[0-9]/.test(module) ? 'start with a digit' : PYTHON_KEYWORDS.has(module) ? 'be a Python keyword' : `hide the ${module} it imports`}`,
      'Choose a name that starts with a letter and is not a Python keyword or a library the app uses, e.g. my-app.',
    );
  return module;
}

/** Every file below `dir`, relative to it, in a stable order. */
function filesBelow(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix))
    .sort()
    .flatMap((entry) => {
      const path = prefix === '' ? entry : join(prefix, entry);
      return statSync(join(dir, path)).isDirectory() ? filesBelow(dir, path) : [path];
    });
}

/** Where a template file goes: `_NAME` becomes `.NAME` (not `__init__.py`), `{{module}}` the package. */
function targetPath(path: string, module: string): string {
  const name = basename(path);
  const dotted = /^_[^_]/.test(name) ? join(dirname(path), `.${name.slice(1)}`) : path;
  return dotted.replaceAll('{{module}}', module);
}

/** The template's text with its placeholders filled in (as JSON string content: safe in JSON and TOML). */
function fill(text: string, values: Readonly<Record<string, string>>, file: string): string {
  return text.replace(/\{\{([a-z-]+)\}\}/g, (_, key: string) => {
    const value = values[key];
    if (value === undefined) throw new PollenError('INTERNAL', `Template file ${file} names {{${key}}}`);
    return JSON.stringify(value).slice(1, -1);
  });
}

/** Make the app `parentDir/name` from a template; FILE_EXISTS when that folder holds anything. */
export function createApp(o: NewAppOptions): NewApp {
  checkAppName(o.name);
  if (!Object.hasOwn(APP_TEMPLATES, o.template))
    throw invalid(`No app template "${o.template}"`, `Templates: ${templateList()}.`);
  const dir = resolve(o.parentDir, o.name);
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0))
    throw new PollenError('FILE_EXISTS', `${dir} already exists and is not an empty folder`, {
      hint: 'Choose another name, or run pollen new in another folder.',
    });
  const template = APP_TEMPLATES[o.template] as AppTemplate;
  const module = template.language === 'python' ? pythonModuleName(o.name, template) : '';
  const source = join(PACKAGE_DIR, 'templates', o.template);
  const values = { name: o.name, module, 'pollen-dir': PACKAGE_DIR };
  const files: string[] = [];
  for (const path of filesBelow(source)) {
    const target = targetPath(path, module);
    const text = fill(readFileSync(join(source, path), 'utf8'), values, path);
    mkdirSync(dirname(join(dir, target)), { recursive: true });
    writeFileSync(join(dir, target), text, { flag: 'wx' });
    files.push(target.split(sep).join('/'));
  }
  return { dir, name: o.name, template: o.template, language: template.language, files };
}
