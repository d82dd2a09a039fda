/**
 * scripts/system-deps.txt is the one list of programs the code starts and their Debian packages
 * (.ci/run installs from it). A program started somewhere but missing from the list would only
 * show on a fresh machine, so this test reads the code for the programs it starts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
/** In every Debian system (essential packages), or Node itself. */
const ALWAYS = new Set(['bash', 'sh', 'id', 'tar', 'runuser', 'node', 'npx', 'npm']);

function listed(): Map<string, string> {
  const text = readFileSync(join(ROOT, 'scripts/system-deps.txt'), 'utf8');
  const entries = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(/\s+/) as [string, string]);
  return new Map(entries.map(([program, pkg]) => [program, pkg]));
}

/** The programs a source file starts: the first argument of a process call, or a path constant. */
function programsStarted(source: string): string[] {
  const found = new Set<string>();
  const call = /\b(?:spawn|spawnSync|execFile|execFileSync|execSync|asPostgres)\(\s*['"`]([^'"`\s]+)/g;
  const constant = /=\s*['"]\/(?:usr\/)?s?bin\/([\w.-]+)['"]/g;
  for (const m of source.matchAll(call)) found.add(basename(m[1]!));
  for (const m of source.matchAll(constant)) found.add(m[1]!);
  return [...found];
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
      (f) => /\.(ts|mts|mjs|js)$/.test(f) && !f.startsWith('src/gen/') && f !== 'test/system-deps.test.ts',
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
    const unused = [...deps.keys()].filter((p) => !used.has(p));
    expect(unused, 'no code starts these: remove them from scripts/system-deps.txt').toEqual([]);
  });

  it('names the Debian package that holds each program present here', () => {
    for (const [program, pkg] of listed()) {
      const which = spawnSync(
        'bash',
        ['-c', `command -v ${program} || ls /usr/lib/postgresql/*/bin/${program}`],
        {
          encoding: 'utf8',
        },
      );
      const path = which.stdout.trim().split('\n')[0];
      if (which.status !== 0 || !path) continue; // .ci/run installs it on a machine that lacks it
      // dpkg knows the real file, under /bin on a merged-/usr system.
      const real = realpathSync(path);
      const owner = [real, real.replace(/^\/usr/, '')]
        .map((p) => spawnSync('dpkg', ['-S', p], { encoding: 'utf8' }))
        .find((r) => r.status === 0);
      const holder = owner?.stdout.split(':')[0] ?? `no package (${real})`;
      expect(holder === pkg || holder.startsWith(`${pkg}-`), `${program}: ${path} is in ${holder}`).toBe(
        true,
      );
    }
  });
});
