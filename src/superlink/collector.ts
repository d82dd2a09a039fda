/**
 * Prompt collection of chunks nothing needs any more, so storage (and every node's chunk quota)
 * is given back within minutes, also while runs are active:
 *
 * - run chunks (relay-chunks.ts) that no stored message names and nobody used for
 *   `runChunkGraceMs` (2 minutes): a flood of chunks no reply names, a reply's chunks once the
 *   ServerApp read it, an instruction's once its node did. Looked at every `everyMs` (15 s).
 * - shared chunks (app bundles) that no registered bundle and no stored message names, written
 *   more than `sharedGraceMs` ago (10 minutes: an admin's upload waits that long for its
 *   StartRun). Looked at every `sharedEveryMs` (1 minute), since it reads the folder.
 * - artefact chunks that no artefact names (one saved again under its name, a save that failed
 *   half way), with the same grace and at the same time (artefacts.ts).
 *
 * Nodes write only run scopes (CHUNK_RUN_REQUIRED otherwise), so a run's pushes never race the
 * shared sweep, and the grace covers a node that skipped an upload because the chunk was held.
 */
import type { Logger } from 'pino';
import type { Link } from './link.js';

export interface CollectorOptions {
  everyMs: number;
  runChunkGraceMs: number;
  sharedEveryMs: number;
  sharedGraceMs: number;
}

export const DEFAULT_COLLECTOR: Readonly<CollectorOptions> = {
  everyMs: 15_000,
  runChunkGraceMs: 120_000,
  sharedEveryMs: 60_000,
  sharedGraceMs: 600_000,
};

export interface Collector {
  /** One pass now (the timer skips a pass while one is running). */
  tick(): Promise<void>;
  stop(): void;
}

export function startCollector(
  link: Link,
  log: Logger,
  options: Partial<CollectorOptions> = {},
  now: () => number = Date.now,
): Collector {
  const o = { ...DEFAULT_COLLECTOR, ...options };
  let sharedAt = now();
  let running: Promise<void> | undefined;
  const pass = async (): Promise<void> => {
    const removed = await link.sweepRunChunks(o.runChunkGraceMs).catch((e) => {
      log.warn({ err: e }, 'sweeping run chunks failed');
      return 0;
    });
    if (removed > 0) log.debug({ removed }, 'run chunks swept');
    if (now() - sharedAt < o.sharedEveryMs) return;
    sharedAt = now();
    await link
      .collectGarbage(o.sharedGraceMs)
      .then((r) => r.removed > 0 && log.info(r, 'unreferenced chunks removed'))
      .catch((e) => log.warn({ err: e }, 'chunk garbage collection failed'));
    await link.artefacts
      .collect(o.sharedGraceMs)
      .then((r) => r.removed > 0 && log.info(r, 'unreferenced artefact chunks removed'))
      .catch((e) => log.warn({ err: e }, 'artefact chunk collection failed'));
  };
  const tick = (): Promise<void> => {
    running ??= pass().finally(() => {
      running = undefined;
    });
    return running;
  };
  const timer = setInterval(() => void tick(), o.everyMs);
  timer.unref();
  return { tick, stop: () => clearInterval(timer) };
}
