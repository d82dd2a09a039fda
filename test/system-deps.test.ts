/**
 * scripts/system-deps.txt is the one list of programs the code starts and their Debian packages
 * (.ci/run installs from it). A program started somewhere but missing from the list would only
 * show on a fresh machine, so this test reads the code for the programs it starts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PYTHON } from './support/python.js';

const ROOT = join(import.meta.dirname, '..');
/** In every Debian system (essential packages), or Node itself. */
const ALWAYS = new Set(['bash', 'sh', 'id', 'tar', 'runuser', 'node', 'npx', 'npm']);

/** Programs and Python modules (`py:MODULE`) with their Debian package. */
function listedAll(): Map<string, string> {
  const text = readFileSync(join(ROOT, 'scripts/system-deps.txt'), 'utf8');
  const entries = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(/\s+/) as [string, string]);
  return new Map(entries.map(([program, pkg]) => [program, pkg]));
}

function listed(): Map<string, string> {
  return new Map([...listedAll()].filter(([name]) => !name.startsWith('py:')));
}

/** Listed Python modules (without `py:`) and their package. */
function listedModules(): Map<string, string> {
  return new Map(
    [...listedAll()].filter(([name]) => name.startsWith('py:')).map(([name, pkg]) => [name.slice(3), pkg]),
  );
}

/** The programs a source file starts: the first argument of a process call, or a path constant. */
function programsStarted(source: string): string[] {
  const found = new Set<string>();
  const call = /\b(?:spawn|spawnSync|execFile|execFileSync|execSync|asPostgres)\(\s*['"`]([^'"`\s]+)/g;
  const constant = /=\s*['"]\/(?:usr\/)?s?bin\/([\w.-]+)['"]/g;
  // Shell scripts: a default in a parameter expansion, "${PROTOC:-/usr/bin/protoc}".
  const shellDefault = /:-\/(?:usr\/)?s?bin\/([\w.-]+)\}/g;
  for (const m of source.matchAll(call)) found.add(basename(m[1]!));
  for (const m of source.matchAll(constant)) found.add(m[1]!);
  for (const m of source.matchAll(shellDefault)) found.add(m[1]!);
  return [...found];
}

/** The modules a Python file imports (dotted names; relative imports left out). */
function modulesImported(source: string): string[] {
  const found = new Set<string>();
  for (const m of source.matchAll(/^\s*(?:from\s+([\w.]+)\s+import\b|import\s+([\w., ]+))/gm)) {
    if (m[1]) found.add(m[1]);
    else for (const name of m[2]!.split(',')) found.add(name.trim().split(/\s+/)[0]!);
  }
  return [...found].filter((name) => name !== '' && !name.startsWith('.'));
}

function pythonFiles(): string[] {
  const out = execFileSync(
    'git',
    ['ls-files', '-co', '--exclude-standard', 'sdk/python', 'examples', 'templates', 'deploy', 'test'],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  );
  return out.split('\n').filter((f) => f.endsWith('.py') || f.endsWith('.ipynb'));
}

/** A Python file's source; a notebook's code cells, and the kernel that runs them (ipykernel). */
function pythonSource(file: string): string {
  const text = readFileSync(join(ROOT, file), 'utf8');
  if (!file.endsWith('.ipynb')) return text;
  const cells = (JSON.parse(text) as { cells: { cell_type: string; source: string | string[] }[] }).cells;
  const code = cells.filter((c) => c.cell_type === 'code').map((c) => [c.source].flat().join(''));
  return ['import ipykernel', ...code].join('\n');
}

/** Top-level modules that need no package: the standard library, and the project's own files. */
function pythonBuiltins(files: string[]): Set<string> {
  const std = execFileSync(PYTHON, ['-c', 'import sys; print("\\n".join(sorted(sys.stdlib_module_names)))'], {
    encoding: 'utf8',
  });
  const own = files
    .filter((f) => f.endsWith('.py'))
    .flatMap((f) => f.split('/').map((part) => part.replace(/\.py$/, '')));
  return new Set([...std.split('\n').filter(Boolean), '__future__', ...own]);
}

function codeFiles(): string[] {
  const out = execFileSync(
    'git',
    ['ls-files', '-co', '--exclude-standard', 'src', 'test', 'scripts', 'bin'],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  );
  return out
    .split('\n')
    .filter(
      (f) => /\.(ts|mts|mjs|js|sh)$/.test(f) && !f.startsWith('src/gen/') && f !== 'test/system-deps.test.ts',
    );
}

describe('scripts/system-deps.txt', () => {
  it('finds the programs a file starts', () => {
    expect(
      programsStarted(`spawnSync('openssl', ['x509']); execFileSync("/usr/sbin/wg", []); asPostgres('initdb', [
      ]); const KEYGEN = '/usr/bin/ssh-keygen'; spawn(process.execPath, [])`).sort(),
    ).toEqual(['initdb', 'openssl', 'ssh-keygen', 'wg']);
  });

  it('lists every program the code starts, and only those', () => {
    const deps = listed();
    const used = new Map<string, string>();
    for (const file of codeFiles())
      for (const program of programsStarted(readFileSync(join(ROOT, file), 'utf8')))
        if (!used.has(program)) used.set(program, file);
    const missing = [...used].filter(([p]) => !deps.has(p) && !ALWAYS.has(p)).map(([p, f]) => `${p} (${f})`);
    expect(missing, 'add these to scripts/system-deps.txt with their Debian package').toEqual([]);
    // A /PATH entry is a file a program loads (nginx's stream module), not a program started.
    const unused = [...deps.keys()].filter((p) => !used.has(p) && !p.startsWith('/'));
    expect(unused, 'no code starts these: remove them from scripts/system-deps.txt').toEqual([]);
  });

  it('finds the modules a Python file imports', () => {
    expect(
      modulesImported(
        'import numpy as np\nfrom google.protobuf import descriptor\nimport os, sys\nfrom .records import X\n  import torch  # lazily\n',
      ).sort(),
    ).toEqual(['google.protobuf', 'numpy', 'os', 'sys', 'torch']);
  });

  it('lists every Python module the SDK, examples, templates, deploy files and tests import, and only those', () => {
    const files = pythonFiles();
    const builtins = pythonBuiltins(files);
    const modules = listedModules();
    const used = new Map<string, string>();
    const missing: string[] = [];
    for (const file of files)
      for (const name of modulesImported(pythonSource(file))) {
        const entry = [...modules.keys()].find((m) => name === m || name.startsWith(`${m}.`));
        if (entry !== undefined) used.set(entry, file);
        else if (!builtins.has(name.split('.')[0]!)) missing.push(`${name} (${file})`);
      }
    expect(missing, 'add these to scripts/system-deps.txt as py:MODULE with their Debian package').toEqual(
      [],
    );
    const unused = [...modules.keys()].filter((m) => !used.has(m));
    expect(unused, 'nothing imports these: remove them from scripts/system-deps.txt').toEqual([]);
  });

  it('names the Debian package that holds each Python module present here', () => {
    const modules = listedModules();
    // Where each module is, without importing it (torch takes seconds); '' where it is absent.
    const script =
      'import importlib.util, sys\nfor m in sys.argv[1:]:\n  try: print(importlib.util.find_spec(m).origin)\n  except Exception: print("")';
    const r = spawnSync(PYTHON, ['-c', script, ...modules.keys()], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const origins = r.stdout.split('\n');
    [...modules].forEach(([module, pkg], i) => {
      const origin = origins[i];
      if (!origin) return; // .ci/run installs it on a machine that lacks it
      const owner = spawnSync('dpkg', ['-S', realpathSync(origin)], { encoding: 'utf8' });
      const holder = owner.status === 0 ? owner.stdout.split(':')[0] : 'no package';
      expect(holder, `${module}: ${origin}`).toBe(pkg);
    });
  });

  it('names the Debian package that holds each file (/PATH) present here', () => {
    for (const [path, pkg] of [...listed()].filter(([p]) => p.startsWith('/'))) {
      if (!existsSync(path)) continue; // .ci/run installs it on a machine that lacks it
      const owner = spawnSync('dpkg', ['-S', path], { encoding: 'utf8' });
      expect(owner.stdout.split(':')[0], path).toBe(pkg);
    }
  });

  it('names the Debian package that holds each program present here', () => {
    const present: { program: string; pkg: string; path: string; real: string }[] = [];
    for (const [program, pkg] of [...listed()].filter(([p]) => !p.startsWith('/'))) {
      const which = spawnSync(
        'bash',
        ['-c', `command -v ${program} || ls /usr/lib/postgresql/*/bin/${program}`],
        {
          encoding: 'utf8',
        },
      );
      const path = which.stdout.trim().split('\n')[0];
      if (which.status !== 0 || !path) continue; // .ci/run installs it on a machine that lacks it
      present.push({ program, pkg, path, real: realpathSync(path) });
    }
    // dpkg knows the real file, under /bin on a merged-/usr system. One dpkg for all of them: each
    // start reads its whole database (a second on a loaded host).
    const candidates = present.flatMap(({ real }) => [real, real.replace(/^\/usr/, '')]);
    const found = spawnSync('dpkg', ['-S', ...new Set(candidates)], { encoding: 'utf8' }).stdout;
    const owners = new Map(
      found
        .split('\n')
        .map((line) => /^([^:\s,]+)(?::[\w-]+)?: (\/.*)$/.exec(line))
        .filter((m) => m !== null)
        .map((m) => [m[2]!, m[1]!]),
    );
    for (const { program, pkg, path, real } of present) {
      const holder = owners.get(real) ?? owners.get(real.replace(/^\/usr/, '')) ?? `no package (${real})`;
      expect(holder === pkg || holder.startsWith(`${pkg}-`), `${program}: ${path} is in ${holder}`).toBe(
        true,
      );
    }
  });
});
