/**
 * A clock that moves only when the test moves it, for code that takes `clock` and `sleep`
 * (SuperNodeOptions). `advance(ms)` wakes each sleeper in the order they fall due, with the clock
 * at its time, and lets the code it woke run (until it sleeps again) before going on, so a loop
 * that ticks every second runs once per second of the test's time, however fast that passes.
 */

interface Sleeper {
  at: number;
  wake: () => void;
}

export interface ManualClockOptions {
  /** Epoch ms to start at (default: now). */
  start?: number;
  /** Called with each new time (e.g. `vi.setSystemTime`, for a peer that reads Date). */
  onSet?: (now: number) => void;
  /**
   * How long (real ms) to let woken code run when it does not sleep again (it went into a long
   * call): default 1 s. Code that sleeps again ends the wait at once.
   */
  settleMs?: number;
}

export class ManualClock {
  #now: number;
  #sleepers: Sleeper[] = [];
  #slept = 0;
  #onSleep: (() => void) | undefined;
  readonly #onSet: ((now: number) => void) | undefined;
  readonly #settleMs: number;

  constructor(o: ManualClockOptions = {}) {
    this.#now = o.start ?? Date.now();
    this.#onSet = o.onSet;
    this.#settleMs = o.settleMs ?? 1_000;
    this.#onSet?.(this.#now);
  }

  /** Epoch ms (SuperNodeOptions.clock). */
  readonly now = (): number => this.#now;

  /** Resolves when the clock reaches now + ms; rejects when `signal` aborts first. */
  readonly sleep = (ms: number, signal?: AbortSignal): Promise<void> => {
    this.#slept++;
    this.#onSleep?.();
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const sleeper: Sleeper = {
        at: this.#now + ms,
        wake: () => {
          signal?.removeEventListener('abort', abort);
          resolve();
        },
      };
      const abort = () => {
        this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', abort, { once: true });
      this.#sleepers.push(sleeper);
    });
  };

  /** Sleepers waiting now. */
  get sleeping(): number {
    return this.#sleepers.length;
  }

  /** Move the clock `ms` ahead, waking every sleeper due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      // First let what is under way (e.g. a sleep just cut short) settle down, then look.
      await new Promise((r) => setImmediate(r));
      const due = this.#sleepers.filter((s) => s.at <= target).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#sleepers = this.#sleepers.filter((s) => s !== due);
      this.#set(Math.max(this.#now, due.at));
      await this.#settle(() => due.wake());
    }
    this.#set(target);
    await new Promise((r) => setImmediate(r));
  }

  #set(now: number): void {
    this.#now = now;
    this.#onSet?.(now);
  }

  /** Run `wake`, then wait until the woken code sleeps again (or settleMs of real time). */
  async #settle(wake: () => void): Promise<void> {
    const before = this.#slept;
    const slept = new Promise<void>((resolve) => {
      this.#onSleep = () => resolve();
    });
    wake();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#settleMs);
    });
    if (this.#slept === before) await Promise.race([slept, late]);
    clearTimeout(timer);
    this.#onSleep = undefined;
    // The microtasks of what just happened (e.g. the rest of a tick after its last await).
    await new Promise((r) => setImmediate(r));
  }
}
