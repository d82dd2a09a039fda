/**
 * The test files of this checkout that hold the tests of an older one: for timing `npm test` on
 * the same tests before and after a change, when the suite has grown since. Lists both suites
 * with `vitest list --json` and finds each old test here by its full name, else by its own name
 * (the last part: tests moved to another `describe` or file keep it), else keeps its old file if
 * that still exists. Prints the files, space-separated, for `npm test -- FILES`; the counts go to
 * stderr.
 *
 *   npx tsx bench/same-tests.ts /path/to/old/clone > files.txt
 *   (cd /path/to/old/clone && npm test); npm test -- $(cat files.txt)    alternately, one sitting
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

interface Listed {
  name: string;
  file: string;
}

function list(dir: string): Listed[] {
  const out = execFileSync('npx', ['vitest', 'list', '--json'], {
    cwd: dir,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return (JSON.parse(out.slice(out.indexOf('['))) as Listed[]).map((t) => ({
    name: t.name,
    file: relative(dir, t.file),
  }));
}

const old = process.argv[2];
if (!old) {
  console.error('usage: tsx bench/same-tests.ts OLD_CLONE');
  process.exit(2);
}
const here = resolve('.');
const before = list(resolve(old));
const now = list(here);
const byName = new Map<string, Set<string>>();
const byLast = new Map<string, Set<string>>();
for (const t of now) {
  for (const [map, key] of [
    [byName, t.name],
    [byLast, t.name.split(' > ').at(-1) ?? t.name],
  ] as const) {
    const s = map.get(key) ?? new Set<string>();
    s.add(t.file);
    map.set(key, s);
  }
}
const files = new Set<string>();
const found = { full: 0, own: 0, file: 0, none: 0 };
for (const t of before) {
  const full = byName.get(t.name);
  const own = full ? undefined : byLast.get(t.name.split(' > ').at(-1) ?? t.name);
  const where = full ?? own ?? (existsSync(join(here, t.file)) ? new Set([t.file]) : undefined);
  if (full) found.full++;
  else if (own) found.own++;
  else if (where) found.file++;
  else found.none++;
  for (const f of where ?? []) files.add(f);
}
const sorted = [...files].sort();
const testsThere = now.filter((t) => files.has(t.file)).length;
console.error(
  `${before.length} old tests: ${found.full} by full name, ${found.own} by their own name, ${found.file} by their old file, ${found.none} not found; ` +
    `${sorted.length} files here, holding ${testsThere} tests`,
);
console.log(sorted.join(' '));
