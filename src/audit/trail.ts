/**
 * One audit trail per component (the SuperLink, the Certificate Service): the hash-chained log,
 * refusals written through the limiter, and signed checkpoints of the head, written every
 * `checkpointEveryMs` or `checkpointEveryEntries` (whichever comes first) and on close.
 */
import type { Transaction } from 'kysely';
import type { Logger } from 'pino';
import { AuditLog, type AuditStore } from './audit-log.js';
import { type Checkpoint, type CheckpointSigner, signCheckpoint } from './checkpoint.js';
import type { AuditRecord } from './entry.js';
import { DEFAULT_REFUSAL_LIMITS, RefusalLimiter, type RefusalLimits } from './refusals.js';
import type { AuditSchema } from './schema.js';

export interface AuditTrailOptions {
  store: AuditStore;
  /** Signs checkpoints; none (a development SuperLink without TLS): the chain is not anchored. */
  signer?: CheckpointSigner;
  /** Default 5 minutes; 0: only by entries and on close. */
  checkpointEveryMs?: number;
  /** Default 1,000. */
  checkpointEveryEntries?: number;
  refusals?: Partial<RefusalLimits>;
  now?: () => Date;
  log?: Pick<Logger, 'warn'>;
}

export class AuditTrail {
  readonly log: AuditLog;
  private readonly refusals: RefusalLimiter;
  /** The trail's clock (entries are stamped with it). */
  readonly now: () => Date;
  private readonly everyEntries: number;
  private sinceCheckpoint = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** Writes in flight that nobody awaits (refusals), so close() can wait for them. */
  private readonly pending = new Set<Promise<unknown>>();
  private lastSigned: { seq: number; hash: string } | undefined;

  constructor(private readonly o: AuditTrailOptions) {
    this.log = new AuditLog(o.store);
    this.now = o.now ?? (() => new Date());
    this.everyEntries = o.checkpointEveryEntries ?? 1_000;
    this.refusals = new RefusalLimiter(
      (r) => this.record(r),
      { ...DEFAULT_REFUSAL_LIMITS, ...o.refusals },
      () => this.now().getTime(),
    );
    const everyMs = o.checkpointEveryMs ?? 5 * 60_000;
    if (everyMs > 0) {
      this.timer = setInterval(() => this.track(this.tick()), everyMs);
      this.timer.unref();
    }
  }

  /** Record a change inside the transaction that makes it. */
  async append<S extends AuditSchema>(tx: Transaction<S>, r: AuditRecord): Promise<void> {
    await this.log.append(tx, r);
    this.counted();
  }

  /** Record a call in a transaction of its own. */
  async record(r: AuditRecord): Promise<void> {
    await this.log.record(r);
    this.counted();
  }

  /** Record a call that was made already: a failure to write is logged, never answered to its caller. */
  recordCall(r: AuditRecord): Promise<void> {
    return this.track(this.record(r));
  }

  /** Record a refused call, through the limiter; never fails the call it records. */
  refused(r: AuditRecord): Promise<void> {
    return this.track(this.refusals.refused(r));
  }

  /** Write the refusal counts that are due and a checkpoint if the head moved. */
  async tick(): Promise<Checkpoint | undefined> {
    await this.refusals.flush(false);
    return this.checkpoint();
  }

  /** Sign the head now, unless it was signed already (or there is no signer or entry). */
  async checkpoint(): Promise<Checkpoint | undefined> {
    if (!this.o.signer) return undefined;
    const head = await this.log.head();
    if (!head) return undefined;
    this.lastSigned ??= await this.log.latestCheckpoint();
    if (this.lastSigned?.seq === head.seq && this.lastSigned.hash === head.hash) return undefined;
    const c = signCheckpoint(this.o.signer, head, this.now());
    await this.log.addCheckpoint(c);
    this.lastSigned = head;
    this.sinceCheckpoint = 0;
    return c;
  }

  /** Stop the timer, write what the limiter counted and a last checkpoint (graceful stop). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.pending]);
    await this.refusals.flush(true);
    await this.checkpoint();
  }

  /** Stop the timer and wait for the writes in flight, writing nothing more (the store is no longer ours). */
  async abandon(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.settled();
  }

  /** Wait for the writes nobody awaits (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private counted(): void {
    if (++this.sinceCheckpoint >= this.everyEntries && this.o.signer) {
      this.sinceCheckpoint = 0;
      this.track(this.checkpoint());
    }
  }

  /** Failures of background writes are logged, never thrown into a call. */
  private track<T>(p: Promise<T>): Promise<T> {
    const guarded = p.catch((e: unknown) => {
      this.o.log?.warn({ err: e }, 'audit write failed');
      return undefined as T;
    });
    this.pending.add(guarded);
    void guarded.finally(() => this.pending.delete(guarded));
    return guarded;
  }
}
