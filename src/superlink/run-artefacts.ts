/**
 * Run artefacts in the store: the name, size, SHA-256 and chunks of each output a run's ServerApp
 * saved. The bytes live in the SuperLink's artefact store (artefacts.ts); this part keeps only
 * the rows, which outlive the run as its logs and metrics do.
 */
import type { RunStore } from './run-store.js';
import type { LinkDb } from './state-common.js';

export interface ArtefactRecord {
  name: string;
  /** `sha256:HEX` of its bytes. */
  hash: string;
  size: number;
  /** Its chunk ids, in order. */
  chunkIds: string[];
  savedAt: number;
}

export class RunArtefacts {
  constructor(
    private readonly db: LinkDb,
    /** Artefacts belong to a run that exists. */
    private readonly runs: Pick<RunStore, 'requireRun'>,
    private readonly now: () => number,
  ) {}

  /** Store an artefact of `runId`, replacing one of the same name; the record as stored. */
  async put(runId: string, a: Omit<ArtefactRecord, 'savedAt'>): Promise<ArtefactRecord> {
    const record = { ...a, savedAt: this.now() };
    const row = {
      run_id: runId,
      name: a.name,
      hash: a.hash,
      size: a.size,
      chunk_ids: JSON.stringify(a.chunkIds),
      saved_at: record.savedAt,
    };
    await this.db.transaction().execute(async (tx) => {
      await this.runs.requireRun(runId, tx);
      await tx.deleteFrom('run_artefacts').where('run_id', '=', runId).where('name', '=', a.name).execute();
      await tx.insertInto('run_artefacts').values(row).execute();
    });
    return record;
  }

  /** A run's artefacts, by name. */
  async list(runId: string): Promise<ArtefactRecord[]> {
    const rows = await this.db
      .selectFrom('run_artefacts')
      .selectAll()
      .where('run_id', '=', runId)
      .orderBy('name')
      .execute();
    return rows.map((r) => ({
      name: r.name,
      hash: r.hash,
      size: Number(r.size),
      chunkIds: JSON.parse(r.chunk_ids) as string[],
      savedAt: Number(r.saved_at),
    }));
  }

  /** Every chunk an artefact names: the artefact store keeps these. */
  async liveChunkIds(): Promise<Set<string>> {
    const live = new Set<string>();
    const rows = await this.db.selectFrom('run_artefacts').select('chunk_ids').execute();
    for (const r of rows) for (const id of JSON.parse(r.chunk_ids) as string[]) live.add(id);
    return live;
  }
}
