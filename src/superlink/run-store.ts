/**
 * The run store: runs and their lifecycle (pending → starting → running → finished), each
 * transition a compare-and-set, and the hash of each run's ServerApp token. The other parts ask it
 * whether a run exists (records) or is running (messages) inside their own transactions.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { PollenError } from '../errors.js';
import type { UserConfig } from '../sdk/context.js';
import { type LinkDb, type Tx, unknownRun } from './state-common.js';
import type { LinkSchema } from './state-schema.js';

type RunRow = LinkSchema['runs'];

export type RunStatus = RunRow['status'];
export type RunSubStatus = RunRow['sub_status'];
export interface CreateRunInput {
  fabHash: string;
  fabName: string;
  fabVersion: string;
  runConfig: UserConfig;
  federation: string;
  /** Shown to people (an e-mail, a certificate name). */
  createdBy: string;
  /** The creator's identity subject (`own` rights) and organisation; null where unknown. */
  createdBySubject?: string | null;
  org?: string | null;
}
export interface Run extends CreateRunInput {
  runId: string;
  status: RunStatus;
  subStatus: RunSubStatus;
  reason: string;
  createdAt: number;
  pendingAt: number | null;
  startingAt: number | null;
  runningAt: number | null;
  finishedAt: number | null;
}

const LEGAL: Record<RunStatus, readonly RunStatus[]> = {
  pending: ['starting', 'finished'],
  starting: ['running', 'finished'],
  running: ['finished'],
  finished: [],
};
const STATUS_TIME = {
  pending: 'pending_at',
  starting: 'starting_at',
  running: 'running_at',
  finished: 'finished_at',
} as const;

export class RunStore {
  constructor(
    private readonly db: LinkDb,
    /** PostgreSQL: row locks; SQLite has one writer. */
    private readonly pg: boolean,
    private readonly now: () => number,
  ) {}

  async createRun(input: CreateRunInput): Promise<Run> {
    const now = this.now();
    const row: RunRow = {
      run_id: randomBytes(8).toString('hex'),
      status: 'pending',
      sub_status: '',
      reason: '',
      fab_hash: input.fabHash,
      fab_name: input.fabName,
      fab_version: input.fabVersion,
      run_config: JSON.stringify(input.runConfig ?? {}),
      federation: input.federation,
      created_by: input.createdBy,
      created_by_subject: input.createdBySubject ?? null,
      org: input.org ?? null,
      created_at: now,
      pending_at: now,
      starting_at: null,
      running_at: null,
      finished_at: null,
      serverapp_token_sha256: null,
    };
    await this.db.insertInto('runs').values(row).execute();
    return toRun(row);
  }

  async getRun(runId: string): Promise<Run | undefined> {
    const row = await this.db.selectFrom('runs').selectAll().where('run_id', '=', runId).executeTakeFirst();
    return row ? toRun(row) : undefined;
  }

  /** Newest first. */
  async listRuns(options: { limit?: number; federation?: string } = {}): Promise<Run[]> {
    const rows = await this.db
      .selectFrom('runs')
      .selectAll()
      .$if(options.federation !== undefined, (q) => q.where('federation', '=', options.federation!))
      .orderBy('created_at', 'desc')
      .orderBy('run_id', 'desc')
      .$if(options.limit !== undefined, (q) => q.limit(options.limit!))
      .execute();
    return rows.map(toRun);
  }

  /** How many runs are in each state: pending, starting, running, or the outcome of finished ones. */
  async countByState(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('runs')
      .select(['status', 'sub_status', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy(['status', 'sub_status'])
      .execute();
    const counts: Record<string, number> = {};
    for (const r of rows) {
      const state = r.status === 'finished' ? r.sub_status || 'completed' : r.status;
      counts[state] = (counts[state] ?? 0) + Number(r.n);
    }
    return counts;
  }

  /** Runs that were not finished: what a restarted SuperLink must resume or fail. */
  async unfinishedRuns(): Promise<Run[]> {
    const rows = await this.db
      .selectFrom('runs')
      .selectAll()
      .where('status', '<>', 'finished')
      .orderBy('created_at')
      .execute();
    return rows.map(toRun);
  }

  /**
   * Move a run along pending → starting → running → finished, or to finished (failed/stopped)
   * from any unfinished status. Compare-and-set in one transaction: of two racing transitions from
   * the same status, one wins and the other gets RUN_STATE_CONFLICT.
   */
  async transitionRun(
    runId: string,
    to: RunStatus,
    options: { subStatus?: RunSubStatus; reason?: string } = {},
  ): Promise<Run> {
    const subStatus = options.subStatus ?? '';
    if (to === 'finished' && !['completed', 'failed', 'stopped'].includes(subStatus))
      throw new PollenError(
        'INVALID_ARGUMENT',
        'A finished run needs a sub-status: completed, failed or stopped',
      );
    if (to !== 'finished' && subStatus !== '')
      throw new PollenError('INVALID_ARGUMENT', 'Only a finished run has a sub-status');
    const now = this.now();
    return this.db.transaction().execute(async (tx) => {
      const row = await tx
        .selectFrom('runs')
        .selectAll()
        .where('run_id', '=', runId)
        .$if(this.pg, (q) => q.forUpdate())
        .executeTakeFirst();
      if (!row) throw unknownRun(runId);
      const legal =
        LEGAL[row.status].includes(to) &&
        !(to === 'finished' && subStatus === 'completed' && row.status !== 'running');
      if (!legal)
        throw new PollenError(
          'RUN_STATE_CONFLICT',
          `Run ${runId} is ${row.status}; it cannot move to ${to}`,
          {
            data: { runId, status: row.status, subStatus: row.sub_status },
          },
        );
      const patch = {
        status: to,
        sub_status: subStatus,
        reason: options.reason ?? row.reason,
        [STATUS_TIME[to]]: now,
      };
      const r = await tx
        .updateTable('runs')
        .set(patch)
        .where('run_id', '=', runId)
        .where('status', '=', row.status)
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1)
        throw new PollenError('RUN_STATE_CONFLICT', `Run ${runId} changed status concurrently`, {
          data: { runId },
        });
      return toRun({ ...row, ...patch });
    });
  }

  /** Store the SHA-256 of the ServerApp's run token (the token itself is never stored). */
  async setRunToken(runId: string, token: string): Promise<void> {
    const r = await this.db
      .updateTable('runs')
      .set({ serverapp_token_sha256: sha256(token).toString('hex') })
      .where('run_id', '=', runId)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw unknownRun(runId);
  }

  /** Constant-time check of a run token; false for an unknown run or one without a token. */
  async verifyRunToken(runId: string, token: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('runs')
      .select('serverapp_token_sha256')
      .where('run_id', '=', runId)
      .executeTakeFirst();
    const digest = sha256(token);
    const stored = Buffer.from(row?.serverapp_token_sha256 ?? '', 'hex');
    // Compare even when nothing is stored, so the timing does not tell the two cases apart.
    const ok = timingSafeEqual(stored.length === digest.length ? stored : Buffer.alloc(32), digest);
    return ok && stored.length === digest.length;
  }

  /** RUN_NOT_FOUND unless the run exists (in `tx` when given). */
  async requireRun(runId: string, tx: Tx | LinkDb = this.db): Promise<void> {
    const r = await tx.selectFrom('runs').select('run_id').where('run_id', '=', runId).executeTakeFirst();
    if (!r) throw unknownRun(runId);
  }

  /** RUN_NOT_RUNNING unless every run is running, checked in `tx` (and held there on PostgreSQL). */
  async requireRunning(tx: Tx, runIds: readonly string[]): Promise<void> {
    for (const runId of runIds) {
      // FOR SHARE: a concurrent transition to finished waits until this batch is stored.
      const run = await tx
        .selectFrom('runs')
        .select('status')
        .where('run_id', '=', runId)
        .$if(this.pg, (s) => s.forShare())
        .executeTakeFirst();
      if (run?.status !== 'running')
        throw new PollenError(
          'RUN_NOT_RUNNING',
          run ? `Run ${runId} is ${run.status}, not running` : `Run ${runId} does not exist`,
          { data: { runId, status: run?.status ?? null } },
        );
    }
  }
}

function toRun(r: RunRow): Run {
  return {
    runId: r.run_id,
    status: r.status,
    subStatus: r.sub_status,
    reason: r.reason,
    fabHash: r.fab_hash,
    fabName: r.fab_name,
    fabVersion: r.fab_version,
    runConfig: JSON.parse(r.run_config),
    federation: r.federation,
    createdBy: r.created_by,
    createdBySubject: r.created_by_subject,
    org: r.org,
    createdAt: r.created_at,
    pendingAt: r.pending_at,
    startingAt: r.starting_at,
    runningAt: r.running_at,
    finishedAt: r.finished_at,
  };
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
