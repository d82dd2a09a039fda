/**
 * Refused calls are recorded, but a flood of them cannot bloat the log: per key (actor, code,
 * action) the first refusal of a window is written at once and the rest are counted, then written
 * as one entry with their count when the window has passed (or at the next flush). Keys are
 * bounded too: past `maxKeys` open windows, refusals share one overflow key.
 */
import type { AuditRecord } from './entry.js';

export interface RefusalLimits {
  /** One entry per key per window, plus one with the count of the rest (default 60 s). */
  windowMs: number;
  /** Open windows held at once (default 1,000). */
  maxKeys: number;
}

export const DEFAULT_REFUSAL_LIMITS: RefusalLimits = { windowMs: 60_000, maxKeys: 1_000 };

interface Window {
  endsAt: number;
  /** Refusals since the one written, not yet written. */
  more: number;
  /** The latest of them, the one the summary entry describes. */
  last: AuditRecord;
  first: number;
}

const OVERFLOW = '*';

export class RefusalLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly write: (r: AuditRecord) => Promise<unknown>,
    private readonly limits: RefusalLimits,
    private readonly now: () => number,
  ) {}

  /** Record refusal `r` (its outcome `refused CODE`): written now, or counted. */
  async refused(r: AuditRecord): Promise<void> {
    const at = this.now();
    await this.flush(false);
    let key = `${r.actor.auth}\n${r.actor.subject}\n${r.outcome}\n${r.action}`;
    if (!this.windows.has(key) && this.windows.size >= this.limits.maxKeys) key = OVERFLOW;
    const open = this.windows.get(key);
    if (open) {
      open.more++;
      open.last = r;
      return;
    }
    this.windows.set(key, { endsAt: at + this.limits.windowMs, more: 0, last: r, first: at });
    await this.write(key === OVERFLOW ? overflowed(r, 1) : r);
  }

  /**
   * Write the counts of windows that have passed (all of them with `all`, on shutdown) and
   * close them.
   */
  async flush(all = true): Promise<void> {
    const at = this.now();
    for (const [key, w] of this.windows) {
      if (!all && w.endsAt > at) continue;
      this.windows.delete(key);
      if (w.more === 0) continue;
      const r = key === OVERFLOW ? overflowed(w.last, w.more) : w.last;
      await this.write({
        ...r,
        at: new Date(at),
        detail: {
          ...r.detail,
          repeated: w.more,
          from: new Date(w.first).toISOString(),
          to: new Date(Math.min(at, w.endsAt)).toISOString(),
        },
      });
    }
  }
}

/** A refusal past the key budget: the log says how many, not whose. */
function overflowed(r: AuditRecord, count: number): AuditRecord {
  return {
    ...r,
    actor: { subject: OVERFLOW, org: null, auth: r.actor.auth, address: null },
    action: OVERFLOW,
    target: OVERFLOW,
    detail: { overflow: true, count },
  };
}
