/**
 * Load generators. `send(i)` performs request i and resolves true when the answer was right
 * (false, or a rejection, counts as an error). Latencies are in milliseconds.
 */

export interface LoadResult {
  /** From the first send to the last answer. */
  wallMs: number;
  /** Per request, in request order. */
  latencies: Float64Array;
  /** When each request completed, ms after the start (for rate over time). */
  completedAt: Float64Array;
  errors: number;
  /** The first few errors, for the report. */
  errorSamples: string[];
}

type Send = (i: number) => Promise<boolean>;

function recorder(total: number) {
  const r: LoadResult = {
    wallMs: 0,
    latencies: new Float64Array(total),
    completedAt: new Float64Array(total),
    errors: 0,
    errorSamples: [],
  };
  const fail = (e: unknown) => {
    r.errors++;
    if (r.errorSamples.length < 5) r.errorSamples.push(e instanceof Error ? e.message : String(e));
  };
  return { r, fail };
}

/** Closed loop: `concurrency` requests always in flight until `total` have been answered. */
export async function closedLoop(o: { total: number; concurrency: number; send: Send }): Promise<LoadResult> {
  const { r, fail } = recorder(o.total);
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    for (let i = next++; i < o.total; i = next++) {
      const start = performance.now();
      try {
        if (!(await o.send(i))) fail(`request ${i}: wrong answer`);
      } catch (e) {
        fail(e);
      }
      const end = performance.now();
      r.latencies[i] = end - start;
      r.completedAt[i] = end - t0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.total) }, worker));
  r.wallMs = performance.now() - t0;
  return r;
}

/**
 * Open loop: request i is due at start + i/rate whatever happened before (a fixed arrival
 * rate, as real clients arrive). Latency counts from the due time, so a backlog is not hidden
 * (no coordinated omission). At most `maxInFlight` are outstanding; beyond that requests wait.
 */
export async function openLoop(o: {
  total: number;
  ratePerSec: number;
  maxInFlight: number;
  send: Send;
}): Promise<LoadResult> {
  const { r, fail } = recorder(o.total);
  const t0 = performance.now();
  const interval = 1000 / o.ratePerSec;
  let issued = 0;
  let inFlight = 0;
  let finished = 0;
  return new Promise<LoadResult>((resolve) => {
    const one = (i: number) => {
      inFlight++;
      const due = t0 + i * interval;
      o.send(i)
        .then(
          (ok) => {
            if (!ok) fail(`request ${i}: wrong answer`);
          },
          (e) => fail(e),
        )
        .finally(() => {
          const end = performance.now();
          r.latencies[i] = end - due;
          r.completedAt[i] = end - t0;
          inFlight--;
          finished++;
          if (finished === o.total) {
            r.wallMs = end - t0;
            resolve(r);
          } else pump();
        });
    };
    const pump = () => {
      const now = performance.now();
      while (issued < o.total && inFlight < o.maxInFlight && t0 + issued * interval <= now) one(issued++);
    };
    const tick = () => {
      pump();
      if (issued < o.total) setTimeout(tick, Math.max(0, Math.min(interval, 2)));
    };
    tick();
  });
}

/** Completions per second in consecutive slices of the run (to see a rate that decays). */
export function rateOverTime(completedAt: Float64Array, slices: number): number[] {
  const sorted = Float64Array.from(completedAt).sort();
  const n = sorted.length;
  const out: number[] = [];
  let prevT = 0;
  for (let s = 1; s <= slices; s++) {
    const endIdx = Math.round((s * n) / slices) - 1;
    const startIdx = Math.round(((s - 1) * n) / slices);
    const t = sorted[endIdx]!;
    out.push(((endIdx - startIdx + 1) / Math.max(1e-6, t - prevT)) * 1000);
    prevT = t;
  }
  return out;
}
