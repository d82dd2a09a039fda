import { type Kysely, sql, type Transaction } from 'kysely';

type Job<S> = {
  fn: (tx: Transaction<S>) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
};

/**
 * Group commit: writes that arrive while a transaction is being committed wait and then run
 * together in the next one, each inside its own savepoint so one failure does not undo the
 * others. One durable commit (one fsync) then covers many enrollments. Callers see ordinary
 * per-call atomicity: `run(fn)` resolves only after the transaction holding fn has committed.
 */
export class WriteBatcher<S> {
  private queue: Job<S>[] = [];
  private running = false;

  constructor(
    private readonly db: Kysely<S>,
    private readonly maxBatch = 256,
  ) {}

  run<T>(fn: (tx: Transaction<S>) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.running) {
        // Start on the next turn of the event loop: requests read in this turn join the batch.
        // (better-sqlite3 is synchronous, so starting now would commit one job at a time.)
        this.running = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        const results: { ok: boolean; value: unknown }[] = [];
        try {
          await this.db.transaction().execute(async (tx) => {
            for (const job of batch) {
              if (batch.length === 1) {
                // A lone job needs no savepoint: if it throws, the transaction rolls back.
                results.push({ ok: true, value: await job.fn(tx) });
                continue;
              }
              await sql`SAVEPOINT job`.execute(tx);
              try {
                const value = await job.fn(tx);
                await sql`RELEASE SAVEPOINT job`.execute(tx);
                results.push({ ok: true, value });
              } catch (e) {
                await sql`ROLLBACK TO SAVEPOINT job`.execute(tx);
                await sql`RELEASE SAVEPOINT job`.execute(tx);
                results.push({ ok: false, value: e });
              }
            }
          });
        } catch (e) {
          // The commit itself failed (or a lone job threw): nothing of this batch was kept.
          for (const [i, job] of batch.entries())
            job.reject(results[i] && !results[i]!.ok ? results[i]!.value : e);
          continue;
        }
        for (const [i, job] of batch.entries()) {
          const r = results[i]!;
          if (r.ok) job.resolve(r.value);
          else job.reject(r.value);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
