/**
 * Run records: what a run leaves behind for people to read, its log lines (ServerApp output and
 * run events, paged by seq) and its per-round metrics.
 */
import { sql } from 'kysely';
import { PollenError } from '../errors.js';
import { count } from '../util/text.js';
import type { RunStore } from './run-store.js';
import { inChunks, type LinkDb } from './state-common.js';

export type LogStream = 'stdout' | 'stderr' | 'system';
export interface LogLineInput {
  stream: LogStream;
  text: string;
  /** Epoch ms; the SuperLink's clock if left out. */
  at?: number;
}
export interface LogLine {
  seq: number;
  at: number;
  stream: LogStream;
  text: string;
}

export interface RoundMetricsInput {
  round: number;
  /** Epoch ms; the SuperLink's clock if left out. */
  at?: number;
  metrics: Record<string, number>;
  nodeIds?: string[];
  bytesSent?: number;
  bytesReceived?: number;
  /** Replies with content to the round's messages. */
  replies?: number;
  /** The round's error replies and unanswered messages. */
  failures?: number;
}
export interface RoundMetrics {
  round: number;
  at: number;
  metrics: Record<string, number>;
  nodeIds: string[];
  bytesSent: number;
  bytesReceived: number;
  replies: number;
  failures: number;
}

const LOG_STREAMS: readonly LogStream[] = ['stdout', 'stderr', 'system'];

/**
 * What a completed run's reason says about node failures in its rounds: '' when there were
 * none, else e.g. "2 of 3 rounds had node errors (3 failures): pollen log RUN shows them".
 */
export function nodeErrorSummary(runId: string, rounds: readonly Pick<RoundMetrics, 'failures'>[]): string {
  const erred = rounds.filter((r) => r.failures > 0);
  if (erred.length === 0) return '';
  const failures = erred.reduce((n, r) => n + r.failures, 0);
  return `${erred.length} of ${count(rounds.length, 'round')} had node errors (${count(failures, 'failure')}): pollen log ${runId} shows them`;
}

export class RunRecords {
  /** Next log seq per run; appends are chained so seqs commit in order (readers page by seq). */
  private readonly logNext = new Map<string, number>();
  private logChain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: LinkDb,
    /** PostgreSQL: row locks; SQLite has one writer. */
    private readonly pg: boolean,
    /** Records belong to a run that exists. */
    private readonly runs: Pick<RunStore, 'requireRun'>,
    private readonly now: () => number,
  ) {}

  /** Append log lines to a run; returns the seq of the last one (0 if none were given). */
  appendLogs(runId: string, lines: LogLineInput[]): Promise<number> {
    for (const l of lines)
      if (!LOG_STREAMS.includes(l.stream) || typeof l.text !== 'string')
        throw new PollenError(
          'INVALID_ARGUMENT',
          `A log line needs a stream (${LOG_STREAMS.join(', ')}) and text`,
        );
    const job = this.logChain.then(async () => {
      let next = this.logNext.get(runId);
      if (next === undefined) {
        await this.runs.requireRun(runId);
        const r = await this.db
          .selectFrom('run_logs')
          .select(sql<number | null>`max(seq)`.as('m'))
          .where('run_id', '=', runId)
          .executeTakeFirst();
        next = Number(r?.m ?? 0) + 1;
      }
      if (lines.length === 0) return next - 1;
      const now = this.now();
      const rows = lines.map((l, i) => ({
        run_id: runId,
        seq: next! + i,
        at: l.at ?? now,
        stream: l.stream,
        text: l.text,
      }));
      await this.db.transaction().execute((tx) =>
        inChunks(rows, (chunk) =>
          tx
            .insertInto('run_logs')
            .values(chunk)
            .execute()
            .then(() => []),
        ),
      );
      this.logNext.set(runId, next + lines.length);
      return next + lines.length - 1;
    });
    this.logChain = job.catch(() => {});
    return job;
  }

  /** Resolves once every append started so far has settled. */
  async settled(): Promise<void> {
    await this.logChain;
  }

  async readLogs(runId: string, options: { afterSeq?: number; limit?: number } = {}): Promise<LogLine[]> {
    return this.db
      .selectFrom('run_logs')
      .select(['seq', 'at', 'stream', 'text'])
      .where('run_id', '=', runId)
      .where('seq', '>', options.afterSeq ?? 0)
      .orderBy('seq')
      .limit(Math.max(1, Math.min(options.limit ?? 1000, 100_000)))
      .execute();
  }

  /**
   * Record a round's metrics. A second call for the same round merges into it (fit and evaluate
   * report separately): metrics by key, node ids as a union, byte and reply counts added.
   */
  async addRoundMetrics(runId: string, input: RoundMetricsInput): Promise<RoundMetrics> {
    if (!Number.isInteger(input.round) || input.round < 0)
      throw new PollenError('INVALID_ARGUMENT', 'The round must be a non-negative integer');
    for (const [k, v] of Object.entries(input.metrics))
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new PollenError('INVALID_ARGUMENT', `Metric ${k} must be a finite number`);
    for (const key of ['replies', 'failures'] as const) {
      const v = input[key];
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0))
        throw new PollenError('INVALID_ARGUMENT', `The round's ${key} must be a non-negative integer`);
    }
    const now = input.at ?? this.now();
    return this.db.transaction().execute(async (tx) => {
      await this.runs.requireRun(runId, tx);
      const prev = await tx
        .selectFrom('run_metrics')
        .selectAll()
        .where('run_id', '=', runId)
        .where('round', '=', input.round)
        .$if(this.pg, (s) => s.forUpdate())
        .executeTakeFirst();
      const merged: RoundMetrics = {
        round: input.round,
        at: now,
        metrics: { ...(prev ? JSON.parse(prev.metrics) : {}), ...input.metrics },
        nodeIds: [
          ...new Set([...(prev ? (JSON.parse(prev.node_ids) as string[]) : []), ...(input.nodeIds ?? [])]),
        ],
        bytesSent: (prev?.bytes_sent ?? 0) + (input.bytesSent ?? 0),
        bytesReceived: (prev?.bytes_received ?? 0) + (input.bytesReceived ?? 0),
        replies: (prev?.replies ?? 0) + (input.replies ?? 0),
        failures: (prev?.failures ?? 0) + (input.failures ?? 0),
      };
      const row = {
        run_id: runId,
        round: merged.round,
        at: now,
        metrics: JSON.stringify(merged.metrics),
        node_ids: JSON.stringify(merged.nodeIds),
        bytes_sent: merged.bytesSent,
        bytes_received: merged.bytesReceived,
        replies: merged.replies,
        failures: merged.failures,
      };
      if (prev)
        await tx
          .updateTable('run_metrics')
          .set(row)
          .where('run_id', '=', runId)
          .where('round', '=', input.round)
          .execute();
      else await tx.insertInto('run_metrics').values(row).execute();
      return merged;
    });
  }

  async listRoundMetrics(runId: string): Promise<RoundMetrics[]> {
    const rows = await this.db
      .selectFrom('run_metrics')
      .selectAll()
      .where('run_id', '=', runId)
      .orderBy('round')
      .execute();
    return rows.map((r) => ({
      round: r.round,
      at: r.at,
      metrics: JSON.parse(r.metrics),
      nodeIds: JSON.parse(r.node_ids),
      bytesSent: r.bytes_sent,
      bytesReceived: r.bytes_received,
      replies: r.replies,
      failures: r.failures,
    }));
  }
}
