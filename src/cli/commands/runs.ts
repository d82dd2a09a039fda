import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { PollenError } from '../../errors.js';
import type { RoundMetrics, Run } from '../../gen/pollen/v1/records_pb.js';
import { action } from '../command.js';
import { parseConfigPairs } from '../config-pairs.js';
import { openControl, rpc } from '../control-client.js';
import { bold, dim, type Output, ok, Reported } from '../output.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

function runJson(run: Run) {
  return {
    runId: run.runId,
    status: run.status,
    subStatus: run.subStatus || null,
    reason: run.reason || null,
    app: run.fab ? { name: run.fab.name, version: run.fab.version, hash: run.fab.hash } : null,
    federation: run.federation,
    createdBy: run.createdBy,
    createdAt: new Date(Number(run.createdAt)).toISOString(),
    finishedAt: run.finishedAt ? new Date(Number(run.finishedAt)).toISOString() : null,
  };
}

function roundJson(r: RoundMetrics) {
  return {
    round: r.round,
    metrics: r.metrics,
    nodes: r.nodeIds,
    bytesSent: Number(r.bytesSent),
    bytesReceived: Number(r.bytesReceived),
  };
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

export function formatRound(r: ReturnType<typeof roundJson>): string {
  const m = Object.entries(r.metrics)
    .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
    .join('  ');
  return `  round ${String(r.round).padStart(3)}  ${m}  ${dim(`${r.nodes.length} nodes, ${mb(r.bytesSent + r.bytesReceived)} moved`)}`;
}

function statusText(run: ReturnType<typeof runJson>): string {
  return run.status === 'finished' ? `finished:${run.subStatus}` : run.status;
}

/** Exit code of `run --stream` / `log --stream`: 0 only when the run completed. */
function finalError(run: Run): PollenError | undefined {
  if (run.status !== 'finished' || run.subStatus === 'completed') return undefined;
  return new PollenError(
    run.subStatus === 'stopped' ? 'RUN_STOPPED' : 'RUN_FAILED',
    `Run ${run.runId} ${run.subStatus}: ${run.reason}`,
  );
}

async function follow(
  s: ReturnType<typeof openControl>,
  runId: string,
  out: Output,
  printLines: boolean,
): Promise<Run | undefined> {
  let last: Run | undefined;
  for await (const msg of s.control.streamLogs({ runId, follow: true })) {
    if (printLines && !out.json)
      for (const l of msg.lines) out.line(l.stream === 'stderr' ? dim(l.text) : l.text);
    if (msg.run) last = msg.run;
  }
  return last;
}

export function registerRuns(program: Command): void {
  program
    .command('run [APP_DIR] [FEDERATION]')
    .description('build an app and start a run of it on a federation')
    .option('--run-config <k=v>', 'override the app default run config (repeatable)', collect, [])
    .option('--stream', 'follow the run: logs and per-round metrics until it finishes')
    .addHelpText(
      'after',
      `
Examples:
  pollen run examples/mnist local --run-config num-rounds=5 --stream
  pollen run . prod --run-config "learning-rate=0.05 local-epochs=2"

The app is bundled with its dependencies (pollen build), pushed in content-addressed chunks
(only what the SuperLink lacks) and started as a ServerApp process on the SuperLink. Without
--stream the command prints the run id and returns; follow it with pollen log RUN_ID --stream.`,
    )
    .action(
      action<{ runConfig: string[]; stream?: boolean }>(async (o, out, args) => {
        const [appDir = '.', federationName] = args;
        const { buildApp } = await import('../../apps/build.js');
        const { uploadChunks } = await import('../../transport/chunk-transfer.js');
        const { CHUNK_SIZE, chunkId } = await import('../../transport/chunks.js');
        // Resolve the federation first: a wrong name fails before the build.
        const s = openControl(federationName, o.config);
        try {
          out.progress(`building ${appDir}`);
          const built = await buildApp(appDir);
          const bytes = readFileSync(built.path);
          const chunks = new Map<string, Uint8Array>();
          const chunkIds: string[] = [];
          for (let i = 0; i < bytes.length; i += CHUNK_SIZE) {
            const part = bytes.subarray(i, Math.min(i + CHUNK_SIZE, bytes.length));
            const id = chunkId(part);
            chunks.set(id, part);
            chunkIds.push(id);
          }
          out.progress(
            `pushing ${built.manifest.name} (${mb(bytes.length)}, ${built.hash}) to ${s.federation.name}`,
          );
          await rpc(uploadChunks(s.chunks, chunks));
          const { runId } = await rpc(
            s.control.startRun({
              fab: {
                hash: built.hash,
                size: BigInt(bytes.length),
                chunkIds,
                name: built.manifest.name,
                version: built.manifest.version,
              },
              runConfig: (await import('../../transport/wire.js')).configToWire(
                parseConfigPairs(o.runConfig, '--run-config'),
              ),
              federation: s.federation.name,
            }),
          );
          if (!o.stream) {
            out.result(
              { runId, federation: s.federation.name, app: built.manifest.name, hash: built.hash },
              (d) => [
                `${ok('started')} run ${bold(d.runId)} of ${d.app} on ${d.federation}`,
                dim(`  follow it: pollen log ${d.runId} --stream`),
              ],
            );
            return;
          }
          out.progress(`run ${runId} started; following it`);
          const run = await rpc(follow(s, runId, out, true));
          const details = await rpc(s.control.getRunDetails({ runId }));
          const result = { run: runJson(details.run ?? run!), rounds: details.rounds.map(roundJson) };
          const render = (d: typeof result) => [
            bold(`run ${d.run.runId} ${statusText(d.run)}`),
            ...d.rounds.map(formatRound),
          ];
          const err = finalError(details.run ?? run!);
          if (err) throw out.failure(result, err, render);
          out.result(result, render);
        } finally {
          s.close();
        }
      }),
    );

  program
    .command('list [FEDERATION]')
    .alias('ls')
    .description('list runs, or show one run with its per-round metrics (--run-id)')
    .option('--run-id <id>', 'show this run in detail')
    .addHelpText(
      'after',
      `
Examples:
  pollen list                          # runs on the default federation
  pollen ls prod --json
  pollen list --run-id 3f9c0a12b4d5e6f7  # status and per-round metrics of one run`,
    )
    .action(
      action<{ runId?: string }>(async (o, out, args) => {
        const s = openControl(args[0], o.config);
        try {
          if (o.runId) {
            const d = await rpc(s.control.getRunDetails({ runId: o.runId }));
            const result = { run: runJson(d.run!), rounds: d.rounds.map(roundJson) };
            out.result(result, (r) => [
              `${bold(`run ${r.run.runId}`)}  ${statusText(r.run)}${r.run.reason ? `  (${r.run.reason})` : ''}`,
              `  app ${r.run.app?.name} ${r.run.app?.version}  ${dim(r.run.app?.hash ?? '')}`,
              `  created ${r.run.createdAt} by ${r.run.createdBy}`,
              ...(r.rounds.length ? r.rounds.map(formatRound) : [dim('  no rounds reported yet')]),
            ]);
            return;
          }
          const { runs } = await rpc(s.control.listRuns({ limit: 100 }));
          const list = runs.map(runJson);
          out.result({ federation: s.federation.name, runs: list }, (d) =>
            d.runs.length === 0
              ? 'no runs yet: start one with pollen run APP_DIR'
              : d.runs.map(
                  (r) => `${r.runId}  ${statusText(r).padEnd(18)} ${r.app?.name ?? ''}  ${dim(r.createdAt)}`,
                ),
          );
        } finally {
          s.close();
        }
      }),
    );

  program
    .command('log <RUN_ID> [FEDERATION]')
    .description("print a run's log (ServerApp output and run events)")
    .option('--stream', 'keep following until the run finishes')
    .addHelpText(
      'after',
      `
Examples:
  pollen log 3f9c0a12b4d5e6f7
  pollen log 3f9c0a12b4d5e6f7 prod --stream   # follow; exits non-zero if the run fails or is stopped`,
    )
    .action(
      action<{ stream?: boolean }>(async (o, out, args) => {
        const [runId, federation] = args as [string, string | undefined];
        const s = openControl(federation, o.config);
        try {
          const lines: { seq: number; stream: string; text: string }[] = [];
          let run: Run | undefined;
          for await (const msg of s.control.streamLogs({ runId, follow: Boolean(o.stream) })) {
            for (const l of msg.lines) {
              if (out.json) lines.push({ seq: Number(l.seq), stream: l.stream, text: l.text });
              else out.line(l.text);
            }
            if (msg.run) run = msg.run;
          }
          const result = { runId, lines, run: run ? runJson(run) : null };
          const err = o.stream && run ? finalError(run) : undefined;
          if (err) throw out.failure(result, err, () => []);
          if (out.json) out.result(result, () => []);
        } catch (e) {
          if (e instanceof Reported) throw e;
          throw (await import('../../transport/errors.js')).fromConnectError(e);
        } finally {
          s.close();
        }
      }),
    );

  program
    .command('stop <RUN_ID> [FEDERATION]')
    .description('stop a run: its ServerApp process ends and nodes stop its ClientApps')
    .addHelpText(
      'after',
      `
Examples:
  pollen stop 3f9c0a12b4d5e6f7
  pollen stop 3f9c0a12b4d5e6f7 prod --json

A run that already finished cannot be stopped (RUN_STATE_CONFLICT, exit code 6).`,
    )
    .action(
      action<object>(async (o, out, args) => {
        const [runId, federation] = args as [string, string | undefined];
        const s = openControl(federation, o.config);
        try {
          const { run } = await rpc(s.control.stopRun({ runId }));
          out.result({ run: runJson(run!) }, (d) => `run ${d.run.runId} ${statusText(d.run)}`);
        } finally {
          s.close();
        }
      }),
    );
}
