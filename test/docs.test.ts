/**
 * The manuals describe today's Pollen: their commands run (scripts/doc-blocks.ts, in a temporary
 * workspace, with the CLI of this clone) and print what the manuals show; every error code they
 * name exists; every environment variable they name is read, and every variable the CLI reads is
 * named in one of them; the README and `pollen --help` tell the same about `pollen demo`.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type BlockResult,
  extractBlocks,
  manualBlocks,
  normalize,
  report,
  runBlocks,
} from '../scripts/doc-blocks.js';
import { APP_RESOURCE_VARIABLES } from '../src/apps/app-env.js';
import { environmentVariables, SCRIPT_VARIABLES } from '../src/cli/env-options.js';
import { buildProgram } from '../src/cli/main.js';
import { ERROR_CODES } from '../src/errors.js';
import { ReplyErrorCode } from '../src/sdk/app.js';
import { ensureBuilt, pollenInProcess } from './support/cli.js';

const ROOT = resolve(import.meta.dirname, '..');
const read = (path: string) => readFileSync(resolve(ROOT, path), 'utf8');
/** The manuals the harness runs, in order. */
const MANUALS = [
  'README.md',
  'docs/enrollment.md',
  'docs/federation.md',
  'docs/simulation.md',
  'docs/identity.md',
  'docs/python.md',
  'docs/operations.md',
  'docs/deployment.md',
];
/** The manuals that must describe every error code and environment variable they name. */
const OPERATOR_MANUALS = [
  'docs/enrollment.md',
  'docs/federation.md',
  'docs/identity.md',
  'docs/python-operators.md',
  'docs/operations.md',
];

describe('the doc-block harness', () => {
  it('pairs each bash block with the text block after it, reads skip markers and table rows', () => {
    const md = [
      '```bash',
      'pollen --version',
      '```',
      '',
      '```text',
      '0.1.0',
      '```',
      '<!-- doc-test: skip — needs two machines -->',
      '```bash',
      'pollen superlink',
      '```',
      '| task | command |',
      '|---|---|',
      '| see it | `pollen a` · `pollen b` |',
      '| not here | `pollen c` <!-- doc-test: skip — runs until stopped --> |',
    ].join('\n');
    expect(extractBlocks(md, 'x.md')).toEqual([
      { file: 'x.md', line: 1, commands: 'pollen --version', expected: ['0.1.0'] },
      { file: 'x.md', line: 9, commands: 'pollen superlink', expected: [], skip: 'needs two machines' },
      { file: 'x.md', line: 14, commands: 'pollen a\npollen b', expected: [] },
      { file: 'x.md', line: 15, commands: 'pollen c', expected: [], skip: 'runs until stopped' },
    ]);
  });

  it('refuses a marker without a reason', () => {
    expect(() => extractBlocks('<!-- doc-test: skip -->\n```bash\nls\n```', 'x.md')).toThrow(
      /doc-test: skip — REASON/,
    );
  });

  it('masks what differs between runs, and nothing else', () => {
    const a = normalize(
      '  root fingerprint   sha256:6122e2baf2002aa44e865512161fb438fbff2eb3f4fab54b4e623fdf6cf805e1 in /tmp/pdoc/ca at 2026-11-22T07:19:04Z',
    );
    expect(a).toBe(
      normalize(
        'root fingerprint sha256:0123456789abcdef0123456789abcdef in /tmp/pollen-doc-x/y/ca at 2027-01-01T00:00:00Z',
      ),
    );
    expect(a).not.toBe(
      normalize(
        'root fingerprint sha256:0123456789abcdef0123 in /tmp/ws/ca at 2027-01-01T00:00:00Z (expired)',
      ),
    );
  });

  it('runs blocks in order, carries exports and the folder, reuses printed values, reports failures', async () => {
    const blocks = extractBlocks(
      [
        '```bash',
        'mkdir sub && cd sub && export GREETING=hello',
        'echo "id 0123456789abcdef0123"',
        '```',
        '```text',
        'id fedcba9876543210fedc',
        '```',
        '```bash',
        'echo "$GREETING from $(basename "$PWD") fedcba9876543210fedc"',
        '```',
        '```text',
        'hello from sub 0123456789abcdef0123',
        '```',
        '```bash',
        'echo this; false',
        '```',
        '```text',
        'that',
        '```',
      ].join('\n'),
      'x.md',
    );
    const results = await runBlocks(blocks);
    expect(results.map((r) => r.status)).toEqual(['passed', 'passed', 'failed']);
    // The second block printed the value the first run printed, not the documented one.
    expect(results[1]?.output).toContain('hello from sub 0123456789abcdef0123');
    expect(results[2]?.problems).toEqual(['not printed: that', 'exited with 1']);
  });
  it('runs no block after a failed one: they would wait on what it did not do', async () => {
    const blocks = extractBlocks(
      ['```bash', 'false', '```', '```bash', 'touch ran', '```', '```bash', 'touch ran-too', '```'].join(
        '\n',
      ),
      'x.md',
    );
    const started = Date.now();
    const results = await runBlocks(blocks, { timeout: 60 });
    expect(results.map((r) => r.status)).toEqual(['failed', 'not run', 'not run']);
    expect(results.map((r) => r.output)).toEqual([expect.any(String), '', '']);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(report(results)).toMatch(/0 blocks passed, 1 failed, 0 skipped, 2 not run$/);
  });

  it('starts a background block, goes on once it printed its output, and stops it at the end', async () => {
    const blocks = extractBlocks(
      [
        '<!-- doc-test: background -->',
        '```bash',
        'echo "listening on https://certs.example.com:8443"; exec sleep 60',
        '```',
        '```text',
        'listening on https://certs.example.com:8443',
        '```',
        '```bash',
        `node -e "require('dns').lookup('certs.example.com', (e, a) => console.log(a))"`,
        '```',
        '```text',
        '127.0.0.1',
        '```',
      ].join('\n'),
      'x.md',
    );
    expect(blocks[0]?.background).toBe(true);
    const started = Date.now();
    const results = await runBlocks(blocks);
    expect(results.map((r) => [r.status, r.problems])).toEqual([
      ['passed', []],
      ['passed', []],
    ]);
    expect(Date.now() - started).toBeLessThan(30_000); // the sleep was stopped, not waited for
  });

  it('stops what a manual left running, also in a process group of its own', async () => {
    const blocks = extractBlocks(
      ['```bash', 'set -m', 'sleep 60 >/dev/null 2>&1 &', 'echo "left $!"', '```'].join('\n'),
      'x.md',
    );
    const [result] = await runBlocks(blocks);
    const pid = Number(/left (\d+)/.exec(result?.output ?? '')?.[1]);
    expect(pid).toBeGreaterThan(1);
    // Gone, or a zombie its new parent has not reaped yet.
    let state: string | undefined;
    try {
      state = /\) (\w)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
    } catch {
      state = undefined;
    }
    expect([undefined, 'Z']).toContain(state);
  });
});

describe('the manuals, run', () => {
  const results = new Map<string, BlockResult[]>();
  beforeAll(() => ensureBuilt('cli/main.js'), 120_000);

  for (const manual of MANUALS)
    it(`${manual}: every block that runs here prints what the manual shows`, async () => {
      const run = await runBlocks(manualBlocks(manual));
      results.set(manual, run);
      const text = report(run);
      console.log(`${manual}\n${text}`);
      expect(
        run.filter((r) => r.status === 'failed'),
        text,
      ).toEqual([]);
      expect(run.filter((r) => r.status === 'passed').length).toBeGreaterThan(0);
    }, 300_000);
});

describe('what the manuals name exists', () => {
  /** Capitalised words in backticks that are not Pollen's codes: variables, placeholders, errnos. */
  const NOT_CODES = new Set([
    'HOME',
    'PATH',
    'TMPDIR',
    'NODE_OPTIONS',
    'STATE_DIR',
    'CODE',
    'EACCES',
    'EROFS',
    'HS256',
    'SUB',
    // What an app process is given (apps/app-env.ts, apps/python-env.ts).
    ...APP_RESOURCE_VARIABLES,
    'PYTHONPATH',
    'PYTHONUNBUFFERED',
    'PYTHONDONTWRITEBYTECODE',
  ]);

  it('every error code they name is in the catalogue (src/errors.ts) or a reply code of the SDK', () => {
    const codes = new Set([...Object.keys(ERROR_CODES), ...Object.values(ReplyErrorCode)]);
    for (const manual of OPERATOR_MANUALS) {
      const text = read(manual);
      const named = new Set(
        [...text.matchAll(/`([A-Z][A-Z0-9_]{2,})`|error\[([A-Z_]+)\]|"code":"([A-Z_]+)"/g)]
          .map((m) => m[1] ?? m[2] ?? m[3] ?? '')
          .filter((c) => !c.startsWith('POLLEN_') && !NOT_CODES.has(c)),
      );
      expect(named.size, manual).toBeGreaterThan(5);
      for (const code of named) expect(codes, `${manual} names ${code}`).toContain(code);
    }
  });

  it('every environment variable they name is read, and they name every one the CLI reads', () => {
    const cli = environmentVariables(buildProgram()).map((v) => v.name);
    const given = APP_RESOURCE_VARIABLES.filter((v) => v.startsWith('POLLEN_'));
    const known = new Set([...cli, ...Object.keys(SCRIPT_VARIABLES), ...given]);
    const named = new Set(
      OPERATOR_MANUALS.flatMap((m) => [...read(m).matchAll(/POLLEN_[A-Z0-9_]+/g)].map((x) => x[0])),
    );
    for (const name of named) expect(known, `named in the manuals: ${name}`).toContain(name);
    for (const name of known) expect(named, `read by Pollen: ${name}`).toContain(name);
  });

  it('the README says what `pollen demo` does as its --help does', async () => {
    const demo = buildProgram().commands.find((c) => c.name() === 'demo');
    expect(read('README.md')).toContain(`npm run demo   # ${demo?.description()}`);
    const help = (await pollenInProcess(['--help'])).stdout;
    expect(help).toMatch(/pollen demo +a whole secure federation on this machine/);
    expect(help).toMatch(/pollen demo enrollment +the auto-scale enrollment workflow/);
  });
});
