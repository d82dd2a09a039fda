/**
 * Seconds of each timed run of `fn` after one warm-up: at least 2 runs, then more while under
 * `seconds` in all, at most `maxReps`.
 */
export function timeIt(fn: () => void, seconds: number, maxReps = 7): number[] {
  fn();
  const times: number[] = [];
  const until = performance.now() + seconds * 1000;
  while (times.length < maxReps && (times.length < 2 || performance.now() < until)) {
    const t = performance.now();
    fn();
    times.push((performance.now() - t) / 1000);
  }
  return times;
}
