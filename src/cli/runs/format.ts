/** How the run commands show runs and rounds, and when a followed run makes them fail. */
import { PollenError } from '../../errors.js';
import type { RoundMetrics, Run } from '../../gen/pollen/v1/records_pb.js';
import type { ControlSession } from '../control-client.js';
import { dim, type Output } from '../output.js';

export function runJson(run: Run) {
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

export function roundJson(r: RoundMetrics) {
  return {
    round: r.round,
    metrics: r.metrics,
    nodes: r.nodeIds,
    bytesSent: Number(r.bytesSent),
    bytesReceived: Number(r.bytesReceived),
    replies: r.replies,
    failures: r.failures,
  };
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

export function formatRound(r: ReturnType<typeof roundJson>): string {
  const m = Object.entries(r.metrics)
    .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
    .join('  ');
  const counts = `${r.nodes.length} nodes, ${r.replies} replies, ${r.failures} failed`;
  return `  round ${String(r.round).padStart(3)}  ${m}  ${dim(`${counts}, ${mb(r.bytesSent + r.bytesReceived)} moved`)}`;
}

export function statusText(run: ReturnType<typeof runJson>): string {
  return run.status === 'finished' ? `finished:${run.subStatus}` : run.status;
}

/** The run's status with its reason, e.g. `finished:completed  (1 of 2 rounds had node errors …)`. */
export function statusLine(run: ReturnType<typeof runJson>): string {
  return `${statusText(run)}${run.reason ? `  (${run.reason})` : ''}`;
}

/** Exit code of `run --stream` / `log --stream`: 0 only when the run completed. */
export function finalError(run: Run): PollenError | undefined {
  if (run.status !== 'finished' || run.subStatus === 'completed') return undefined;
  return new PollenError(
    run.subStatus === 'stopped' ? 'RUN_STOPPED' : 'RUN_FAILED',
    `Run ${run.runId} ${run.subStatus}: ${run.reason}`,
  );
}

/** Follow a run's log until it finishes (its lines printed as text); the run as it ended. */
export async function follow(
  s: ControlSession,
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
