/**
 * Calls counted by name, cheaply, for what is too frequent to log or audit one by one (the Fleet
 * API's heartbeats, pulls and pushes). A metrics endpoint reads `snapshot()`.
 */
export class CallCounter {
  private readonly counts = new Map<string, number>();

  count(name: string): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }

  /** Every name counted so far and its count. */
  snapshot(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }
}
