/**
 * Start-up of the CLI: `pollen --help`, `--version`, every command's help and a mistyped command
 * load commander and the option tables only. A command's libraries (x509, undici, yaml, Connect,
 * zod, the OIDC client …) load when the command runs, through `lazy()` in cli/command.ts. Only a
 * fresh process shows what start-up loads, so each case runs the built CLI with an import hook
 * that writes every module it resolves to a file. It runs tsc's modules (POLLEN_NO_BUNDLE=1),
 * whose names show what loaded: the bundle bin/pollen.js runs otherwise (dist/bundle/) is split
 * at the same lazy imports (test/cli-bundle.test.ts).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, POLLEN_BIN, tempDir } from './support/cli.js';
import { TRACE_ARGS } from './support/module-trace.js';

/** Libraries only a command's work needs. */
const HEAVY = [
  '@peculiar/x509',
  'undici',
  'yaml',
  '@connectrpc/',
  '@bufbuild/',
  'zod',
  'jose',
  'openid-client',
  'fastify',
  'kysely',
  'better-sqlite3',
  'esbuild',
  'smol-toml',
  'cli-table3',
];

let tmp: ReturnType<typeof tempDir>;
let runs = 0;
beforeAll(() => {
  ensureBuilt('cli/main.js');
  tmp = tempDir('pollen-startup-');
});
afterAll(() => tmp.cleanup());

/** The modules `pollen ARGS` resolves, the CLI's own as `dist/…`, libraries by package. */
function loaded(args: string[]): { code: number; modules: string[] } {
  const trace = join(tmp.dir, `trace-${++runs}.txt`);
  writeFileSync(trace, '');
  const r = spawnSync(process.execPath, [...TRACE_ARGS, POLLEN_BIN, ...args], {
    cwd: tmp.dir,
    env: {
      ...process.env,
      NO_COLOR: '1',
      POLLEN_TRACE_ESM: trace,
      POLLEN_NO_BUNDLE: '1',
      POLLEN_CONFIG: join(tmp.dir, 'none.toml'),
    },
    encoding: 'utf8',
    timeout: 30_000,
  });
  const dist = `${resolve(import.meta.dirname, '../dist')}/`;
  const modules = readFileSync(trace, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((url) =>
      url
        .replace(/^file:\/\//, '')
        .replace(dist, 'dist/')
        .replace(/^.*\/node_modules\//, ''),
    );
  return { code: r.status ?? -1, modules };
}

const heavyIn = (modules: string[]) =>
  [...new Set(modules.flatMap((m) => HEAVY.filter((h) => m.startsWith(h))))].sort();

/** Some commands' implementations (cli/GROUP/COMMAND.js), which only running them loads. */
const IMPLEMENTATIONS = [
  'runs/list',
  'runs/run',
  'token/generate',
  'cert/init',
  'superlink/run',
  'supernode/run',
];

describe('pollen start-up', () => {
  it.each(['--version', '--help', 'list --help', 'lst'])(
    '`pollen %s` loads no library a command needs to run',
    (line) => {
      const { code, modules } = loaded(line.split(' '));
      expect(code).toBe(line === 'lst' ? 2 : 0);
      expect(heavyIn(modules)).toEqual([]);
      expect(IMPLEMENTATIONS.filter((m) => modules.includes(`dist/cli/${m}.js`))).toEqual([]);
    },
  );

  it('a command loads its own libraries when it runs, and only those', () => {
    writeFileSync(join(tmp.dir, 'policy.yaml'), 'metadata:\n  project: p\n');
    const { modules } = loaded(['policy', 'check', 'policy.yaml']);
    expect(modules).toContain('dist/cli/policy/check.js');
    expect(heavyIn(modules)).toEqual(['cli-table3', 'yaml', 'zod']);
  });
});
