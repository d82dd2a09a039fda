/** How the run commands show runs and rounds, and when a followed run makes them fail. */
import { Code, ConnectError } from '@connectrpc/connect';
import { PollenError } from '../../errors.js';
import type { StreamLogsResponse } from '../../gen/pollen/v1/control_pb.js';
import type { Artefact, RoundMetrics, Run } from '../../gen/pollen/v1/records_pb.js';
import { ERROR_CODE_HEADER } from '../../transport/errors.js';
import { count } from '../../util/text.js';
import type { ControlSession } from '../control-client.js';
import { dim, formatMetrics, type Output } from '../output.js';

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

export function artefactJson(a: Artefact) {
  return {
    name: a.name,
    size: Number(a.size),
    hash: a.hash,
    savedAt: new Date(Number(a.savedAt)).toISOString(),
  };
}

/** One artefact as a line: name, size and SHA-256 (what `sha256sum` prints, to compare). */
export function formatArtefact(a: { name: string; size: number; hash: string }): string {
  return `  ${a.name}  ${mb(a.size)}  ${dim(a.hash)}`;
}

/** A run's artefacts under a heading that says how to get them (nothing if there are none). */
export function formatArtefacts(runId: string, artefacts: ReturnType<typeof artefactJson>[]): string[] {
  if (artefacts.length === 0) return [];
  return [`  artefacts ${dim(`(pollen pull ${runId})`)}`, ...artefacts.map((a) => `  ${formatArtefact(a)}`)];
}

export function formatRound(r: ReturnType<typeof roundJson>): string {
  const counts = `${count(r.nodes.length, 'node')}, ${count(r.replies, 'reply')}, ${r.failures} failed`;
  return `  round ${String(r.round).padStart(3)}  ${formatMetrics(r.metrics)}  ${dim(`${counts}, ${mb(r.bytesSent + r.bytesReceived)} moved`)}`;
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

/**
 * A run's log as StreamLogs sends it; with `followRun`, until the run finished (no deadline: a
 * run may take hours). A followed stream that ends or breaks before the run finished means the
 * SuperLink went away (SUPERLINK_GONE); a refusal the SuperLink sent keeps its own code.
 */
export async function* runLog(
  s: ControlSession,
  runId: string,
  followRun: boolean,
  signal?: AbortSignal,
): AsyncGenerator<StreamLogsResponse> {
  let finished = !followRun;
  try {
    for await (const msg of s.control.streamLogs(
      { runId, follow: followRun },
      { signal, ...(followRun && { timeoutMs: 0 }) },
    )) {
      if (msg.run?.status === 'finished') finished = true;
      yield msg;
    }
  } catch (e) {
    if (signal?.aborted || !followRun || !connectionLost(e)) throw e;
    throw superlinkGone(s, runId, e);
  }
  if (!finished && !signal?.aborted) throw superlinkGone(s, runId);
}

/** A call that broke on the way, with no answer of the SuperLink's own. */
function connectionLost(e: unknown): boolean {
  const ce = ConnectError.from(e);
  return ce.metadata.get(ERROR_CODE_HEADER) === null && ce.code !== Code.Unimplemented;
}

/** (The Connect error stays out of `cause`: withControl would read it as a failure to reach.) */
function superlinkGone(s: ControlSession, runId: string, lost?: unknown): PollenError {
  return new PollenError(
    'SUPERLINK_GONE',
    `The SuperLink at ${s.connection.url} went away while following run ${runId}`,
    {
      detail: lost === undefined ? 'the stream ended' : String(lost),
      hint: `The SuperLink stopped or the connection broke. Once it is back, follow the run again: pollen log ${runId} ${s.arg} --stream (a run the SuperLink was running when it stopped ends failed).`,
    },
  );
}

/** Follow a run's log until it finishes (its lines printed as text); the run as it ended. */
export async function follow(
  s: ControlSession,
  runId: string,
  out: Output,
  printLines: boolean,
  signal?: AbortSignal,
): Promise<Run | undefined> {
  let last: Run | undefined;
  for await (const msg of runLog(s, runId, true, signal)) {
    if (printLines && !out.json)
      for (const l of msg.lines) out.line(l.stream === 'stderr' ? dim(l.text) : l.text);
    if (msg.run) last = msg.run;
  }
  return last;
}
