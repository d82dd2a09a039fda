/** Wake long polls when something they wait for may have arrived. Bounded by the waits in flight. */
export class Waiters {
  readonly #waiting = new Map<string, Set<() => void>>();

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
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        const s = this.#waiting.get(key);
        s?.delete(done);
        if (s?.size === 0) this.#waiting.delete(key);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
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
