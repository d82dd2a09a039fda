/** Wake long polls when something they wait for may have arrived. Bounded by the waits in flight. */
export class Waiters {
  readonly #waiting = new Map<string, Set<() => void>>();
  readonly #sleep: ((ms: number, signal: AbortSignal) => Promise<void>) | undefined;

  /**
   * `sleep` (resolves after `ms`, or at any time once `signal` aborts) measures the waits on
   * another clock than the timers (tests drive it); by default each wait is a plain timer.
   */
  constructor(o: { sleep?: (ms: number, signal: AbortSignal) => Promise<void> } = {}) {
    this.#sleep = o.sleep;
  }

  /** Resolve after `ms`, or earlier when `key` is notified or the signal aborts. */
  wait(key: string, ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let set = this.#waiting.get(key);
      if (!set) {
        set = new Set();
        this.#waiting.set(key, set);
      }
      const done = (): void => {
        cancel();
        signal?.removeEventListener('abort', done);
        const s = this.#waiting.get(key);
        s?.delete(done);
        if (s?.size === 0) this.#waiting.delete(key);
        resolve();
      };
      const cancel = this.#after(ms, done);
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  /** Call `fn` after `ms`; the function returned cancels that. */
  #after(ms: number, fn: () => void): () => void {
    if (!this.#sleep) {
      const timer = setTimeout(fn, ms);
      return () => clearTimeout(timer);
    }
    const ac = new AbortController();
    this.#sleep(ms, ac.signal).then(
      () => {
        if (!ac.signal.aborted) fn();
      },
      () => {},
    );
    return () => ac.abort();
  }

  notify(key: string): void {
    const set = this.#waiting.get(key);
    if (!set) return;
    for (const wake of [...set]) wake();
  }

  /** How many waits on `key` are in flight. */
  count(key: string): number {
    return this.#waiting.get(key)?.size ?? 0;
  }

  notifyAll(): void {
    for (const key of [...this.#waiting.keys()]) this.notify(key);
  }
}
