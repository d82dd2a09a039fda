/**
 * Start-up of the CLI as a process: the bundle (dist/bundle/, what bin/pollen.js runs)
 * against tsc's modules (dist/cli/main.js, what it runs with POLLEN_NO_BUNDLE=1), alternating A/B
 * in one run. Per command, the median wall time and CPU (user + system) of the whole process; for
 * the SuperLink, wall and CPU from the spawn to its "running" banner.
 *
 *   npm run build && npx tsx bench/cli-startup.ts            ~1 min
 *   npx tsx bench/cli-startup.ts --reps 5 --json
 *
 * Not part of the test suite. The figures on the shared 2-core machine drift: read the ratios.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '7' },
    // Other entry files to compare, NAME=FILE,… (a module exporting main(argv), as dist/cli/main.js).
    entries: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const REPS = Number(args.reps);
const BIN = resolve(import.meta.dirname, '../bin/pollen.js');
const TICK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

interface Variant {
  name: string;
  env: NodeJS.ProcessEnv;
  /** The script node runs (default bin/pollen.js). */
  script?: string;
}
const VARIANTS: Variant[] = [
  { name: 'bundle', env: {} },
  { name: 'modules', env: { POLLEN_NO_BUNDLE: '1' } },
  ...(args.entries ?? '')
    .split(',')
    .filter(Boolean)
    .map((spec) => {
      const [name = spec, file = ''] = spec.split('=');
      return { name, env: {}, script: resolve(file) };
    }),
];

interface Sample {
  wall: number;
  cpu: number;
}

const tmp = mkdtempSync(join(tmpdir(), 'pollen-startup-bench-'));
const baseEnv = (v: Variant): NodeJS.ProcessEnv => ({
  ...process.env,
  NO_COLOR: '1',
  POLLEN_METRICS_ADDRESS: 'off',
  POLLEN_CONFIG: join(tmp, 'config.toml'),
  ...v.env,
});

/** One command to its end, timed by GNU time (the child's own CPU, all threads). */
function command(v: Variant, argv: string[]): Sample {
  const out = join(tmp, 'time.txt');
  const r = spawnSync(
    '/usr/bin/time',
    ['-f', '%e %U %S', '-o', out, process.execPath, v.script ?? BIN, ...argv],
    {
      cwd: tmp,
      env: baseEnv(v),
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`pollen ${argv.join(' ')} (${v.name}) exited ${r.status}: ${r.stderr}`);
  const [wall, user, sys] = readFileSync(out, 'utf8').trim().split('\n').at(-1)?.split(' ').map(Number) ?? [];
  return { wall: wall ?? Number.NaN, cpu: (user ?? 0) + (sys ?? 0) };
}

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** A SuperLink (insecure, SQLite) from spawn to its banner; CPU read from /proc at that moment. */
async function superlink(v: Variant, state: string): Promise<Sample> {
  const [fleet, control, appio] = [await freePort(), await freePort(), await freePort()];
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      v.script ?? BIN,
      'superlink',
      '--insecure',
      '--state-dir',
      state,
      '--fleet-address',
      `127.0.0.1:${fleet}`,
      '--control-address',
      `127.0.0.1:${control}`,
      '--serverappio-address',
      `127.0.0.1:${appio}`,
    ],
    { cwd: tmp, env: baseEnv(v), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const sample = await new Promise<Sample>((res, rej) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (!out.includes('Ctrl-C to stop')) return;
      const wall = (performance.now() - started) / 1000;
      const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      res({ wall, cpu: (Number(fields[11]) + Number(fields[12])) / TICK });
    });
    child.on('exit', (code) =>
      rej(new Error(`SuperLink (${v.name}) exited ${code} before ready: ${out}${err}`)),
    );
  });
  child.removeAllListeners('exit');
  await new Promise((res) => {
    child.on('exit', res);
    child.kill('SIGTERM');
  });
  return sample;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

const CASES: { name: string; run: (v: Variant, i: number) => Sample | Promise<Sample> }[] = [
  { name: 'pollen --version', run: (v) => command(v, ['--version']) },
  { name: 'pollen --help', run: (v) => command(v, ['--help']) },
  {
    name: 'pollen config superlink list --json',
    run: (v) => command(v, ['config', 'superlink', 'list', '--json']),
  },
  {
    name: 'pollen cert init',
    run: (v, i) => command(v, ['cert', 'init', '-n', 'Bench', '-o', join(tmp, `ca-${v.name}-${i}`)]),
  },
  { name: 'SuperLink start to ready', run: (v, i) => superlink(v, join(tmp, `sl-${v.name}-${i}`)) },
];

try {
  command(VARIANTS[0] as Variant, [
    'config',
    'superlink',
    'add',
    'local',
    '--address',
    '127.0.0.1:1',
    '--insecure',
  ]);
  const rows: { case: string; variant: string; wall: number; cpu: number }[] = [];
  for (const c of CASES) {
    const samples = new Map<string, Sample[]>(VARIANTS.map((v) => [v.name, []]));
    await c.run(VARIANTS[0] as Variant, -1); // warm the file cache
    for (let i = 0; i < REPS; i++)
      for (const v of i % 2 ? [...VARIANTS].reverse() : VARIANTS)
        samples.get(v.name)?.push(await c.run(v, i));
    for (const [variant, s] of samples)
      rows.push({
        case: c.name,
        variant,
        wall: median(s.map((x) => x.wall)),
        cpu: median(s.map((x) => x.cpu)),
      });
  }
  if (args.json) process.stdout.write(`${JSON.stringify({ reps: REPS, rows }, null, 2)}\n`);
  else {
    process.stdout.write(`median of ${REPS}, alternating; ratio = variant ÷ modules\n`);
    for (const c of CASES) {
      const base = rows.find((r) => r.case === c.name && r.variant === 'modules');
      if (!base) continue;
      for (const r of rows.filter((x) => x.case === c.name))
        process.stdout.write(
          `${c.name.padEnd(38)} ${r.variant.padEnd(8)} wall ${r.wall.toFixed(2)} s (${(r.wall / base.wall).toFixed(2)})` +
            `   cpu ${r.cpu.toFixed(2)} s (${(r.cpu / base.cpu).toFixed(2)})\n`,
        );
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
