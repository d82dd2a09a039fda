/**
 * The manuals' commands, run: every ```bash block of a Markdown manual (and every command of a
 * `| task | command |` table) runs in order in one temporary workspace, and the lines of the
 * ```text block right after it must appear in what the commands printed.
 *
 * A block that cannot run here says why, on the line before it (in a table: in its row):
 *
 *     <!-- doc-test: skip — needs two machines -->
 *
 * A block that runs until stopped (a service) is marked `<!-- doc-test: background -->`: it is
 * started, ready once it printed its documented output, and its process group is stopped when
 * the manual ends. What else a manual left running (a site that `start.sh` put in a process group
 * of its own, when a block failed before its `stop.sh`) is stopped then too. Host names under `example.com` are this machine (127.0.0.1) for the commands, and
 * Pollen's default ports (8443, 9091 to 9097) are free ports of this run, so runs never collide.
 *
 * Output is compared line by line after `normalize`: what differs from run to run (hashes,
 * times, request ids, absolute paths, numbers other than those ending a name like `hospital-2`,
 * table widths) is masked. A hash or request id a manual shows in an output and then uses in a
 * later command (a root fingerprint, a request id) is replaced in that command by the value this
 * run printed. A line `...` in an output stands for lines left out. A block whose output shows an
 * error (a line that starts with `error`) may exit non-zero.
 *
 * `npx tsx scripts/doc-blocks.ts docs/enrollment.md …` runs manuals and prints each block's
 * result; test/docs.test.ts runs them as a test.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = resolve(import.meta.dirname, '..');
const MARKER = /<!--\s*doc-test:\s*(?:skip\s*[—–-]\s*(.+?)|(background))\s*-->/;
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
  /** It runs until stopped: started in the background, stopped when the manual ends. */
  background?: true;
}

/** What the marker on `text` says about a block; a marker of another form is an error. */
function marker(text: string, where: string): Pick<DocBlock, 'skip' | 'background'> {
  if (!ANY_MARKER.test(text)) return {};
  const m = MARKER.exec(text);
  if (m?.[1]) return { skip: m[1] };
  if (m?.[2]) return { background: true };
  throw new Error(
    `${where}: a doc-test marker is \`<!-- doc-test: skip — REASON -->\` or \`<!-- doc-test: background -->\``,
  );
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
          ...marker(lines[before] ?? '', `${file}:${i + 1}`),
        };
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
        blocks.push({
          file,
          line: i + 1,
          commands: commands.join('\n'),
          expected: [],
          ...marker(line, `${file}:${i + 1}`),
        });
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
  // A number, but not one that ends a name (hospital-2, site-1): lines about two sites differ.
  [/(?<![A-Za-z]-)\d+(\.\d+)?/g, '#'],
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
  /** 'not run': an earlier block of the manual failed, so this one would only wait on it. */
  status: 'passed' | 'failed' | 'skipped' | 'not run';
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
 * Makes host names under example.com resolve to this machine in every Node.js process, and moves
 * Pollen's default ports (DOC_TEST_PORTS: documented → free) so that two runs never collide.
 */
const HOSTS_PRELOAD = `import dns from 'node:dns';
import net from 'node:net';
const here = (host) => /(^|\\.)example\\.com$/i.test(String(host));
const address = { address: '127.0.0.1', family: 4 };
const lookup = dns.lookup;
dns.lookup = function (host, options, callback) {
  const cb = typeof options === 'function' ? options : callback;
  const opts = typeof options === 'object' && options !== null ? options : {};
  if (!here(host)) return lookup.call(this, host, options, callback);
  process.nextTick(() => (opts.all ? cb(null, [address]) : cb(null, address.address, address.family)));
};
const lookupAsync = dns.promises.lookup;
dns.promises.lookup = (host, opts) =>
  here(host) ? Promise.resolve(opts?.all ? [address] : address) : lookupAsync(host, opts);
const ports = JSON.parse(process.env.DOC_TEST_PORTS ?? '{}');
const moved = (port) => ports[String(port)] ?? port;
/** First argument of listen() and Socket#connect(): a port, options, or connect's normalized [options, cb]. */
const move = (args) => {
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  if (typeof first === 'object' && first !== null && first.port != null) first.port = moved(first.port);
  else if (/^\\d+$/.test(String(first))) args[0] = moved(Number(first));
  return args;
};
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  return listen.apply(this, move(args));
};
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  return connect.apply(this, move(args));
};
`;

/** Pollen's default ports, which the manuals name: the APIs, then the ops listeners (port map). */
const DEFAULT_PORTS = [8443, 9091, 9092, 9093, 9094, 9095, 9096, 9097];

/** A port nobody listens on now. */
function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => done(port));
    });
  });
}

/** The workspace's bin folder: `pollen` (this clone's CLI), and `curl` that reaches example.com here. */
function binFolder(ws: string, ports: Record<string, number>): { bin: string; preload: string } {
  const bin = join(ws, '.bin');
  mkdirSync(bin);
  const script = (name: string, text: string) => {
    writeFileSync(join(bin, name), text);
    chmodSync(join(bin, name), 0o755);
  };
  script('pollen', `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, 'bin/pollen.js')}" "$@"\n`);
  const curl = spawnSync('sh', ['-c', 'command -v curl'], { encoding: 'utf8' }).stdout.trim();
  const connectTo = Object.entries(ports).map(([from, to]) => `--connect-to ':${from}:127.0.0.1:${to}' `);
  if (curl)
    script('curl', `#!/bin/sh\nexec "${curl}" ${connectTo.join('')}--connect-to '::127.0.0.1:' "$@"\n`);
  const preload = join(bin, 'hosts.mjs');
  writeFileSync(preload, HOSTS_PRELOAD);
  return { bin, preload };
}

/**
 * Runs the blocks in order in a new temporary workspace, with `pollen` (this clone's CLI) on the
 * PATH; exported variables and the working folder carry from one block to the next.
 */
export async function runBlocks(blocks: readonly DocBlock[], o: RunOptions = {}): Promise<BlockResult[]> {
  const ws = mkdtempSync(join(tmpdir(), 'pollen-doc-'));
  const state = join(ws, '.state');
  const ports: Record<string, number> = {};
  for (const port of DEFAULT_PORTS) ports[port] = await freePort();
  const { bin, preload } = binFolder(ws, ports);
  writeFileSync(state, `cd '${ws}'\n`);
  const env: NodeJS.ProcessEnv = {
    ...cleanEnv(),
    ...o.env,
    // The workspace is HOME, so what a manual writes under ~ (~/.pollen/config.toml) stays in it.
    HOME: ws,
    PATH: `${bin}:${process.env.PATH}`,
    NODE_OPTIONS: `--import=${pathToFileURL(preload).href}`,
    DOC_TEST_PORTS: JSON.stringify(ports),
    // Marks every process of this run, so that the ones a manual leaves behind can be found.
    DOC_TEST_WORKSPACE: ws,
    NO_COLOR: '1',
    npm_config_offline: 'true',
    // A manual's `npm install` links this clone; its prepare script would rebuild dist/ under
    // the tests that use it.
    npm_config_ignore_scripts: 'true',
  };
  const timeoutMs = (o.timeout ?? 120) * 1000;
  const seen = new Map<string, string>();
  const results: BlockResult[] = [];
  const services: ChildProcess[] = [];
  try {
    for (const block of blocks) {
      if (block.skip) {
        results.push({ block, status: 'skipped', problems: [], output: '', seconds: 0 });
        continue;
      }
      // Later blocks build on this one's state (services, sites, ids): after a failure they would
      // wait out their time limits, so the manual ends here and its processes are stopped.
      if (results.some((r) => r.status === 'failed' || r.status === 'not run')) {
        results.push({ block, status: 'not run', problems: [], output: '', seconds: 0 });
        continue;
      }
      let commands = block.commands;
      for (const [documented, actual] of seen) commands = commands.split(documented).join(actual);
      // The next block starts where this one ended, with its exports (also when it fails).
      const save = `{ export -p; echo "cd '$(pwd)'"; } > '${state}'`;
      const started = Date.now();
      const problems: string[] = [];
      let output: string;
      if (block.background) {
        const service = await startService(`. '${state}'\n${commands}\n`, block.expected, {
          cwd: ws,
          env,
          timeoutMs,
        });
        services.push(service.child);
        output = service.output;
        if (!service.ready) problems.push('did not print its documented output (it runs until stopped)');
      } else {
        const script = `. '${state}'\ntrap '${save.replace(/'/g, `'\\''`)}' EXIT\n${commands}\n`;
        const r = await bash(script, { cwd: ws, env, timeoutMs });
        output = `${r.stdout}\n${r.stderr}`; // a line of stdout may lack its newline (curl)
        const failureShown = block.expected.some((l) => /^error\b/.test(l.trim()));
        if (r.timedOut) problems.push(`did not finish in ${timeoutMs / 1000} s`);
        else if (r.status !== 0 && !failureShown) problems.push(`exited with ${r.status}`);
      }
      problems.unshift(...compare(block.expected, output, seen));
      results.push({
        block,
        status: problems.length === 0 ? 'passed' : 'failed',
        problems,
        output,
        seconds: (Date.now() - started) / 1000,
      });
    }
  } finally {
    await Promise.all(services.map(stopService));
    await stopLeftovers(`DOC_TEST_WORKSPACE=${ws}`);
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

/**
 * Starts a block that runs until stopped, in a process group of its own (stopService ends the
 * whole group); ready once it printed every documented line, not ready if it exits first or
 * takes longer than the timeout.
 */
function startService(
  script: string,
  expected: readonly string[],
  o: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ child: ChildProcess; output: string; ready: boolean }> {
  const child = spawn('bash', ['-c', script], { cwd: o.cwd, env: o.env, detached: true });
  let output = '';
  return new Promise((done) => {
    const finish = (ready: boolean) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      done({ child, output, ready });
    };
    const onData = (d: Buffer) => {
      output += d;
      if (compare(expected, output, new Map()).length === 0) finish(true);
    };
    const onExit = () => finish(false);
    const timer = setTimeout(() => finish(false), o.timeoutMs);
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', onExit);
  });
}

/** Ends a service's process group: SIGTERM, and SIGKILL what is left after 10 seconds. */
async function stopService(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  process.kill(-child.pid, 'SIGTERM');
  const timer = setTimeout(() => child.pid !== undefined && process.kill(-child.pid, 'SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Processes whose environment holds `mark` (Linux's /proc; elsewhere none are found). */
function processesMarked(mark: string): number[] {
  if (!existsSync('/proc')) return [];
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(mark);
      } catch {
        return false; // gone meanwhile, or another user's
      }
    })
    .map(Number);
}

/** Ends what a manual left running: SIGTERM, and SIGKILL what is left after 5 seconds. */
async function stopLeftovers(mark: string): Promise<void> {
  const signal = (pids: number[], sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        // it ended meanwhile
      }
    }
  };
  signal(processesMarked(mark), 'SIGTERM');
  for (let waited = 0; waited < 5000 && processesMarked(mark).length > 0; waited += 100)
    await new Promise((done) => setTimeout(done, 100));
  signal(processesMarked(mark), 'SIGKILL');
}

/**
 * The environment without Pollen's own variables: a manual's commands start from nothing, and
 * open no ops listener unless they name --metrics-address (tests run side by side).
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('POLLEN_')) delete env[k];
  return { ...env, POLLEN_METRICS_ADDRESS: 'off' };
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
    if (r.status === 'not run') return `· ${where} (not run: an earlier block failed)`;
    if (r.status === 'passed') return `✓ ${where} (${r.seconds.toFixed(1)} s)`;
    return `✗ ${where}\n    ${r.problems.join('\n    ')}\n  output:\n${r.output.replace(/^/gm, '    | ')}`;
  });
  const count = (s: BlockResult['status']) => results.filter((r) => r.status === s).length;
  const notRun = count('not run') > 0 ? `, ${count('not run')} not run` : '';
  lines.push(
    `${count('passed')} blocks passed, ${count('failed')} failed, ${count('skipped')} skipped${notRun}`,
  );
  return lines.join('\n');
}

/** The blocks of one manual, by its path in the repository. */
export function manualBlocks(path: string): DocBlock[] {
  const file = resolve(ROOT, path);
  return extractBlocks(readFileSync(file, 'utf8'), file);
}

/** Runs each manual and prints its report; exit code 1 when a block failed. */
async function main(paths: readonly string[]): Promise<number> {
  let failed = false;
  for (const path of paths) {
    const results = await runBlocks(manualBlocks(path));
    process.stdout.write(`${path}\n${report(results)}\n`);
    failed ||= results.some((r) => r.status === 'failed');
  }
  return failed ? 1 : 0;
}

if (process.argv[1]?.endsWith('doc-blocks.ts'))
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
