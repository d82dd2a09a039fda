/**
 * The manuals' commands, run: every ```bash block of a Markdown manual (and every command of a
 * `| task | command |` table) runs in order in one temporary workspace, and the lines of the
 * ```text block right after it must appear in what the commands printed.
 *
 * A block that cannot run here says why, on the line before it (in a table: in its row):
 *
 *     <!-- doc-test: skip — needs two machines -->
 *
 * Output is compared line by line after `normalize`: what differs from run to run (hashes,
 * times, request ids, absolute paths, numbers, table widths) is masked. A hash or request id a
 * manual shows in an output and then uses in a later command (a root fingerprint, a request id)
 * is replaced in that command by the value this run printed. A line `...` in an output stands
 * for lines left out. A block whose output shows an error (a line that starts with `error`) may
 * exit non-zero.
 *
 * `npx tsx scripts/doc-blocks.ts docs/enrollment.md …` runs manuals and prints each block's
 * result; test/docs.test.ts runs them as a test.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const MARKER = /<!--\s*doc-test:\s*skip\s*[—–-]\s*(.+?)\s*-->/;
const ANY_MARKER = /<!--\s*doc-test:/;

export interface DocBlock {
  file: string;
  /** 1-based line of the block's opening fence (or of the table row). */
  line: number;
  /** Shell commands, as bash runs them. */
  commands: string;
  /** The documented output: the lines of the ```text block that follows, if any. */
  expected: string[];
  /** Why the block does not run here (its doc-test marker). */
  skip?: string;
}

/** The marker on `text`, if any: its reason; a marker that is not `skip — REASON` is an error. */
function marker(text: string, where: string): string | undefined {
  if (!ANY_MARKER.test(text)) return undefined;
  const m = MARKER.exec(text);
  if (!m?.[1]) throw new Error(`${where}: a doc-test marker is \`<!-- doc-test: skip — REASON -->\``);
  return m[1];
}

/** The command blocks of a Markdown manual, in order. */
export function extractBlocks(markdown: string, file: string): DocBlock[] {
  const lines = markdown.split('\n');
  const blocks: DocBlock[] = [];
  let i = 0;
  const fence = (at: number) => /^```(\w*)\s*$/.exec(lines[at] ?? '');
  const closing = (from: number) => {
    let j = from;
    while (j < lines.length && !/^```\s*$/.test(lines[j] ?? '')) j++;
    return j;
  };
  let inTable = false;
  while (i < lines.length) {
    const line = lines[i] ?? '';
    const open = fence(i);
    if (open) {
      const end = closing(i + 1);
      if (open[1] === 'bash' || open[1] === 'sh') {
        let before = i - 1;
        while (before >= 0 && (lines[before] ?? '').trim() === '') before--;
        const block: DocBlock = {
          file,
          line: i + 1,
          commands: lines.slice(i + 1, end).join('\n'),
          expected: [],
        };
        const skip = marker(lines[before] ?? '', `${file}:${i + 1}`);
        if (skip) block.skip = skip;
        let next = end + 1;
        while (next < lines.length && (lines[next] ?? '').trim() === '') next++;
        if (fence(next)?.[1] === 'text') {
          const outEnd = closing(next + 1);
          block.expected = lines.slice(next + 1, outEnd);
          i = outEnd;
        }
        blocks.push(block);
        if (block.expected.length === 0) i = end;
      } else i = end;
    } else if (/^\|\s*task\s*\|\s*command\s*\|/.test(line)) inTable = true;
    else if (inTable && line.startsWith('|')) {
      const cell = line.split('|')[2] ?? '';
      const commands = [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
      if (commands.length > 0) {
        const block: DocBlock = { file, line: i + 1, commands: commands.join('\n'), expected: [] };
        const skip = marker(line, `${file}:${i + 1}`);
        if (skip) block.skip = skip;
        blocks.push(block);
      }
    } else inTable = false;
    i++;
  }
  return blocks;
}

/** Values that differ between runs, in the order they are masked (longest patterns first). */
const VOLATILE: [RegExp, string][] = [
  [/\u001b\[[0-9;]*m/g, ''],
  [/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/g, '<uuid>'],
  [/\breq_[A-Za-z0-9_-]{22}\b/g, '<request>'],
  [/\b[0-9a-f]{12,}\b/g, '<hex>'],
  [/\b\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z?/g, '<time>'],
  [/(?<![\w/])[A-Za-z0-9_-]{40,}(?![\w/])/g, '<key>'],
  [/(?:\/[\w.@+-]+)+\/([\w.@+-]+)/g, '…/$1'],
  [/\d+(\.\d+)?/g, '#'],
  [/[─━]+/g, '─'],
  [/\s+/g, ' '],
];

/** A line with what differs between runs masked: two runs of a command normalize alike. */
export function normalize(line: string): string {
  let out = line;
  for (const [re, to] of VOLATILE) out = out.replace(re, to);
  return out.trim();
}

/** The hashes and request ids of a line, in order: the values a later command may reuse. */
function values(line: string): string[] {
  return [...line.matchAll(/\breq_[A-Za-z0-9_-]{22}\b|\b[0-9a-f]{16,}\b/g)].map((m) => m[0]);
}

export interface BlockResult {
  block: DocBlock;
  status: 'passed' | 'failed' | 'skipped';
  /** What went wrong: documented lines not printed, or the exit status. */
  problems: string[];
  output: string;
  seconds: number;
}

export interface RunOptions {
  /** Extra environment for every block. */
  env?: Record<string, string>;
  /** Seconds one block may run (default 120). */
  timeout?: number;
}

/**
 * Runs the blocks in order in a new temporary workspace, with `pollen` (this clone's CLI) on the
 * PATH; exported variables and the working folder carry from one block to the next.
 */
export async function runBlocks(blocks: readonly DocBlock[], o: RunOptions = {}): Promise<BlockResult[]> {
  const ws = mkdtempSync(join(tmpdir(), 'pollen-doc-'));
  const bin = join(ws, '.bin');
  const state = join(ws, '.state');
  mkdirSync(bin);
  writeFileSync(
    join(bin, 'pollen'),
    `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, 'bin/pollen.js')}" "$@"\n`,
  );
  chmodSync(join(bin, 'pollen'), 0o755);
  writeFileSync(state, `cd '${ws}'\n`);
  const seen = new Map<string, string>();
  const results: BlockResult[] = [];
  try {
    for (const block of blocks) {
      if (block.skip) {
        results.push({ block, status: 'skipped', problems: [], output: '', seconds: 0 });
        continue;
      }
      let commands = block.commands;
      for (const [documented, actual] of seen) commands = commands.split(documented).join(actual);
      // The next block starts where this one ended, with its exports (also when it fails).
      const save = `{ export -p; echo "cd '$(pwd)'"; } > '${state}'`;
      const script = `. '${state}'\ntrap '${save.replace(/'/g, `'\\''`)}' EXIT\n${commands}\n`;
      const started = Date.now();
      const r = await bash(script, {
        cwd: ws,
        // The workspace is HOME, so what a manual writes under ~ (~/.pollen/config.toml) stays
        // in it; npm stays off the network.
        env: {
          ...cleanEnv(),
          ...o.env,
          HOME: ws,
          PATH: `${bin}:${process.env.PATH}`,
          NO_COLOR: '1',
          npm_config_offline: 'true',
          // A manual's `npm install` links this clone; its prepare script would rebuild dist/
          // under the tests that use it.
          npm_config_ignore_scripts: 'true',
        },
        timeoutMs: (o.timeout ?? 120) * 1000,
      });
      const output = `${r.stdout}${r.stderr}`;
      const problems = compare(block.expected, output, seen);
      const failureShown = block.expected.some((l) => /^error\b/.test(l.trim()));
      if (r.timedOut) problems.push(`did not finish in ${o.timeout ?? 120} s`);
      else if (r.status !== 0 && !failureShown) problems.push(`exited with ${r.status}`);
      results.push({
        block,
        status: problems.length === 0 ? 'passed' : 'failed',
        problems,
        output,
        seconds: (Date.now() - started) / 1000,
      });
    }
  } finally {
    rmSync(ws, { recursive: true, force: true });
  }
  return results;
}

interface BashResult {
  status: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** `bash -e -o pipefail -c script`, asynchronously: a test worker keeps answering meanwhile. */
function bash(
  script: string,
  o: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<BashResult> {
  return new Promise((done, fail) => {
    const child = spawn('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd: o.cwd, env: o.env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.on('error', fail);
    child.on('close', (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr, timedOut });
    });
  });
}

/** The environment without Pollen's own variables: a manual's commands start from nothing. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('POLLEN_')) delete env[k];
  return env;
}

/**
 * The documented lines that `output` lacks, in order; each documented line that matches records
 * its hashes and request ids against the printed ones in `seen`.
 */
function compare(expected: readonly string[], output: string, seen: Map<string, string>): string[] {
  const printed = output.split('\n').map((l) => ({ raw: l, norm: normalize(l) }));
  const problems: string[] = [];
  for (const line of expected) {
    const want = normalize(line);
    if (want === '' || want === '...' || want === '…') continue;
    const hit = printed.find((p) => p.norm === want);
    if (!hit) {
      problems.push(`not printed: ${line}`);
      continue;
    }
    const documented = values(line);
    const actual = values(hit.raw);
    documented.forEach((v, k) => {
      const a = actual[k];
      if (a !== undefined && !seen.has(v)) seen.set(v, a);
    });
  }
  return problems;
}

/** One line per block: `✓ file:line`, `– file:line (skipped: reason)`, `✗ file:line` and why. */
export function report(results: readonly BlockResult[]): string {
  const lines = results.map((r) => {
    const where = `${relative(ROOT, r.block.file)}:${r.block.line}`;
    if (r.status === 'skipped') return `– ${where} (skipped: ${r.block.skip})`;
    if (r.status === 'passed') return `✓ ${where} (${r.seconds.toFixed(1)} s)`;
    return `✗ ${where}\n    ${r.problems.join('\n    ')}\n  output:\n${r.output.replace(/^/gm, '    | ')}`;
  });
  const count = (s: BlockResult['status']) => results.filter((r) => r.status === s).length;
  lines.push(`${count('passed')} blocks passed, ${count('failed')} failed, ${count('skipped')} skipped`);
  return lines.join('\n');
}

/** The blocks of one manual, by its path in the repository. */
export function manualBlocks(path: string): DocBlock[] {
  const file = resolve(ROOT, path);
  return extractBlocks(readFileSync(file, 'utf8'), file);
}

if (process.argv[1]?.endsWith('doc-blocks.ts')) {
  let failed = false;
  for (const path of process.argv.slice(2)) {
    const results = await runBlocks(manualBlocks(path));
    process.stdout.write(`${path}\n${report(results)}\n`);
    failed ||= results.some((r) => r.status === 'failed');
  }
  process.exitCode = failed ? 1 : 0;
}
