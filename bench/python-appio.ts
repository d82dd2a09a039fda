/**
 * A model through ClientAppIo and a Python ClientApp, beside the TypeScript ClientApp on the same
 * bytes and a plain grpcio loopback echo of the same size, measured in the same run:
 *
 *   Python app      the SuperNode's ClientAppIo service (this process, test/support/clientappio.ts)
 *                   sends a 256 MiB state_dict (64 float32 arrays of 4 MiB) to a Python ClientApp
 *                   started as the SuperNode starts it; the app turns it into a PyTorch state_dict,
 *                   changes one value of each array in place (a training step's new weights: every
 *                   chunk of the reply is new) and replies with it.
 *   TypeScript app  the same with the TypeScript ClientApp (bench/python/echo-app.ts).
 *   grpcio echo     bench/python/grpc_echo.py: the same bytes up and back in 4 MiB messages over
 *                   grpcio on loopback, no Pollen code; run twice, as plain Python starts and with
 *                   the allocator settings a node gives its Python apps (APP_MALLOC_VARIABLES).
 *
 * The same work is timed on every path: from the bytes ready at the sender (the instruction's
 * chunks named and in the node's store; the echo's buffer made) until they are back there (the
 * reply pushed and its chunks in the node's store; the echo's last piece received). Making the
 * model, naming its chunks and decoding the reply into fresh arrays to check it stay outside.
 *
 * Targets: the Python app's time within 1.5x the TypeScript app's; its throughput at least 0.8x
 * the grpcio echo's. Peak memory (VmHWM) of the Python app is reported too.
 *
 *   npm run bench:python-appio                 256 MiB, best of 3
 *   npx tsx bench/python-appio.ts --mib 1024 --reps 1 --python-only   peak memory with 1 GiB
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { APP_MALLOC_VARIABLES } from '../src/apps/python-env.js';
import { Message } from '../src/sdk/message.js';
import { ArrayRecord, RecordDict } from '../src/sdk/records.js';
import { cpuSeconds, NODE_ID, peakRss, startClientAppIo } from '../test/support/clientappio.js';
import { PYTHON } from '../test/support/python.js';
import { machineInfo } from './lib/env.js';
import { num, table, times } from './lib/table.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;
const { values: flags } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    reps: { type: 'string', default: '3' },
    // Only the Python app: its memory with a large model (the node's peak is then its alone).
    'python-only': { type: 'boolean', default: false },
  },
});
const mib = Number(flags.mib);
const reps = Number(flags.reps);

function model(totalMiB: number): ArrayRecord {
  const arrays: Record<string, Float32Array> = {};
  const count = Math.max(1, totalMiB / 4);
  for (let i = 0; i < count; i++) {
    const a = new Float32Array((totalMiB * MiB) / count / 4);
    for (let j = 0; j < a.length; j += 1024) a[j] = i + j;
    arrays[`layer${i}.weight`] = a;
  }
  return ArrayRecord.fromArrays(arrays);
}

interface AppResult {
  seconds: number[];
  peakRssMiB: number;
  /** CPU seconds per round: the app process, and this process (the SuperNode's side) while timed. */
  appCpu: number;
  nodeCpu: number;
}

async function throughApp(app: { python?: string; ts?: string }, arrays: ArrayRecord): Promise<AppResult> {
  const io = await startClientAppIo();
  try {
    const proc = io.startApp({ dir: join(HERE, 'python'), ...app });
    let nodeCpu = 0; // CPU seconds of this process (the SuperNode's side) in the timed windows
    const round = async (content: ArrayRecord): Promise<number> => {
      // Staged before the clock starts: the node holds an instruction's chunks before its app asks.
      const staged = io.stage(
        Message.create({
          dstNodeId: NODE_ID,
          messageType: 'train',
          content: new RecordDict({ arrays: content }),
        }),
      );
      const start = performance.now();
      const cpu0 = process.cpuUsage();
      staged.queue();
      // Stopped when the reply and its chunks are in the node's store, as a SuperNode forwards it.
      const wire = await io.replyWire(600_000);
      const seconds = (performance.now() - start) / 1000;
      const cpu = process.cpuUsage(cpu0);
      nodeCpu += (cpu.user + cpu.system) / 1e6;
      const reply = await io.decode(wire); // checked outside the timed window
      if (reply.error) throw new Error(`${reply.error.code}: ${reply.error.reason}`);
      const arrays = reply.content!.getArrayRecord('arrays')!;
      if (arrays.byteLength !== content.byteLength) throw new Error('short reply');
      for (const [name, entry] of arrays.entries())
        if (entry.data[0] !== (content.get(name)!.data[0] as number) + 1)
          throw new Error(`${name} not trained`);
      return seconds;
    };
    await round(ArrayRecord.fromArrays({ w: new Float32Array(16) })); // started and warm
    const seconds: number[] = [];
    const app0 = cpuSeconds(proc.child.pid!);
    nodeCpu = 0;
    for (let i = 0; i < reps; i++) seconds.push(await round(arrays));
    const appCpu = (cpuSeconds(proc.child.pid!) - app0) / reps;
    const peak = peakRss(proc.child.pid!);
    io.end();
    await proc.exited;
    return { seconds, peakRssMiB: peak / MiB, appCpu, nodeCpu: nodeCpu / reps };
  } finally {
    await io.close();
  }
}

/** The echo as plain Python starts, or (`tuned`) with the allocator settings a Python app gets. */
function grpcEcho(tuned: boolean): { seconds: number[]; cpu: number } {
  const r = spawnSync(PYTHON, [join(HERE, 'python', 'grpc_echo.py'), String(mib), String(reps)], {
    encoding: 'utf8',
    env: tuned ? { ...process.env, ...APP_MALLOC_VARIABLES } : process.env,
  });
  if (r.status !== 0) throw new Error(`grpc_echo.py failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { seconds: number[]; cpu: number };
}

const best = (s: number[]) => Math.min(...s);
const arrays = model(mib);
const python = await throughApp({ python: 'echo_app:app' }, arrays);
if (flags['python-only']) {
  const nodePeak = process.resourceUsage().maxRSS / 1024; // KiB -> MiB
  console.log(JSON.stringify(machineInfo()));
  console.log(`\n${mib} MiB through a Python ClientApp and back: ${num(best(python.seconds), 2)} s`);
  console.log(`CPU per round: app ${num(python.appCpu, 2)} s, node side ${num(python.nodeCpu, 2)} s`);
  console.log(
    `peak RSS: app ${num(python.peakRssMiB)} MiB (${times(python.peakRssMiB / mib)} the model), node side ${num(nodePeak)} MiB (${times(nodePeak / mib)})`,
  );
  process.exit(0);
}
const ts = await throughApp({ ts: resolve(HERE, 'python', 'echo-app.ts') }, arrays);
const echo = grpcEcho(false);
const echoTuned = grpcEcho(true);
const moved = (2 * mib) / 1024; // GiB up and back
const [py, tsBest, echoBest, echoTunedBest] = [
  best(python.seconds),
  best(ts.seconds),
  best(echo.seconds),
  best(echoTuned.seconds),
];
const all = (s: number[]) => s.map((x) => num(x, 2)).join(' / ');
console.log(JSON.stringify(machineInfo()));
console.log(`\n${mib} MiB through ClientAppIo and back, best of ${reps}`);
console.log(
  'timed on every path: bytes ready at the sender -> back at the sender (reply and chunks in the\n' +
    "node's store; the echo's last piece received); model making and reply decoding not timed\n",
);
const row = (path: string, seconds: number, cpu: { app: number; node?: number; peakRssMiB?: number }) => [
  path,
  `${num(seconds, 2)} s`,
  num(moved / seconds, 2),
  `${num(cpu.app, 2)} s`,
  cpu.node === undefined ? '–' : `${num(cpu.node, 2)} s`,
  cpu.peakRssMiB === undefined ? '–' : `${num(cpu.peakRssMiB)} MiB`,
];
console.log(
  table(
    ['path', 'time', 'GiB/s (both ways)', 'app CPU', 'node CPU', 'app peak RSS'],
    [
      row('Python app', py, { app: python.appCpu, node: python.nodeCpu, peakRssMiB: python.peakRssMiB }),
      row('TypeScript app', tsBest, { app: ts.appCpu, node: ts.nodeCpu, peakRssMiB: ts.peakRssMiB }),
      row('grpcio echo (Python)', echoBest, { app: echo.cpu }),
      row("grpcio echo, app's malloc", echoTunedBest, { app: echoTuned.cpu }),
    ],
  ),
);
console.log(
  `\nevery round (s): Python app ${all(python.seconds)}; TypeScript app ${all(ts.seconds)}; ` +
    `grpcio echo ${all(echo.seconds)}; with the app's malloc ${all(echoTuned.seconds)}`,
);
console.log(
  'The Python app runs with the allocator settings every Python app gets from its node\n' +
    "(MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_: a round reuses the last round's pages);\n" +
    'the last row gives the echo the same settings.',
);
const vsTs = py / tsBest;
const vsEcho = echoBest / py;
console.log(
  `\nPython time / TypeScript time: ${times(vsTs)} (target ≤ 1.5×): ${vsTs <= 1.5 ? 'PASS' : 'FAIL'}`,
);
console.log(
  `Python throughput / grpcio echo: ${times(vsEcho)} (target ≥ 0.8×): ${vsEcho >= 0.8 ? 'PASS' : 'FAIL'}`,
);
console.log(`Python throughput / grpcio echo with the app's malloc: ${times(echoTunedBest / py)}`);
console.log(`Python app peak RSS / model: ${times(python.peakRssMiB / mib)}`);
