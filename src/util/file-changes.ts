import { statSync } from 'node:fs';

/** Size and modification time of each path ("-" when missing): changes when any file is replaced. */
function signature(paths: readonly string[]): string {
  return paths
    .map((p) => {
      try {
        const s = statSync(p);
        return `${s.mtimeMs}:${s.size}`;
      } catch {
        return '-';
      }
    })
    .join('|');
}

/**
 * Call `onChange` when any of `paths` is written, replaced or removed, checked every `everyMs`
 * (polling: it works on every file system and in every worker process). Returns the stop function.
 */
export function watchFiles(paths: readonly string[], everyMs: number, onChange: () => unknown): () => void {
  let last = signature(paths);
  let busy = false;
  const timer = setInterval(() => {
    const now = signature(paths);
    if (now === last || busy) return;
    last = now;
    busy = true;
    void Promise.resolve()
      .then(onChange)
      .catch(() => undefined)
      .finally(() => {
        busy = false;
      });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
