/**
 * LinkStates for tests: `linkStates` opens them on a backend's stores (see backends.ts) under the
 * test's clock, or only their store (to test one part alone), or a Link over one, and closes them
 * after each test.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, expect } from 'vitest';
import { type Backend, type Database, openDatabase } from '../../src/store/database.js';
import { ArtefactStore } from '../../src/superlink/artefacts.js';
import { Link, type LinkTime } from '../../src/superlink/link.js';
import { ByteBudget, DEFAULT_LIMITS, type Limits } from '../../src/superlink/quotas.js';
import { RelayChunks } from '../../src/superlink/relay-chunks.js';
import { type LinkState, type LinkStateOptions, openLinkState } from '../../src/superlink/state.js';
import { type LinkSchema, linkStateMigrations } from '../../src/superlink/state-schema.js';
import { DiskChunkStore } from '../../src/transport/chunks.js';

/** A Link's settings beyond its state, as `pollen superlink` gives them (superlink.ts). */
export interface TestLinkOptions {
  /** Node-key mode (default off). */
  nodeAuth?: boolean;
  /** Quotas, disk budget and request rates, each defaulting to DEFAULT_LIMITS. */
  limits?: Partial<Limits>;
  /** Bytes of run chunks held in memory before they go to files. */
  chunkMemoryBytes?: number;
  /** The Link's clock (and its chunk relay's); default Date.now and timers. */
  time?: LinkTime;
}

/** Where each test's clock starts. */
export const T0 = 1_700_000_000_000;

/**
 * Opens LinkState pieces on `backend`'s stores (a fresh one from `makeUrl` unless a url is given),
 * all closed after each test. Their clock is `clock.t` (back to T0 before each test; tests move it
 * on), or `o.now`.
 */
export function linkStates(backend: Backend, makeUrl: () => Promise<string>, o: { now?: () => number } = {}) {
  const clock = { t: T0 };
  const now = o.now ?? (() => clock.t);
  const open: { close(): Promise<void> }[] = [];
  beforeEach(() => {
    clock.t = T0;
  });
  afterEach(async () => {
    for (const s of open.splice(0).reverse()) await s.close();
  });
  const track = <T extends { close(): Promise<void> }>(x: T): T => {
    open.push(x);
    return x;
  };
  return {
    clock,
    now,
    /**
     * A LinkState (closing it twice is harmless). All share one lease holder, so race tests may
     * open two on one store (the store lease keeps two SuperLink processes apart; store-lease.ts).
     */
    state: async (options: Partial<Omit<LinkStateOptions, 'now'>> = {}): Promise<LinkState> =>
      track(
        await openLinkState({ now, leaseHolder: 'test', ...options, url: options.url ?? (await makeUrl()) }),
      ),
    /** The migrated store, without a LinkState: for one part alone, or to peek at rows. */
    store: async (url?: string): Promise<Database<LinkSchema>> =>
      track(
        await openDatabase<LinkSchema>({
          url: url ?? (await makeUrl()),
          migrations: linkStateMigrations(backend),
        }),
      ),
    /**
     * A Link over `state` (node authentication off unless asked), with its chunk stores in a fresh
     * folder, one disk budget for all as the SuperLink has, and `o.log` (default silent).
     */
    link: (
      state: LinkState,
      o: TestLinkOptions & { log?: pino.Logger } = {},
    ): { link: Link; chunks: DiskChunkStore; dir: string } => {
      const dir = mkdtempSync(join(tmpdir(), 'pollen-link-'));
      track({ close: async () => rmSync(dir, { recursive: true, force: true }) });
      const limits: Limits = { ...DEFAULT_LIMITS, ...o.limits };
      const budget = new ByteBudget(limits.chunkDiskBudgetBytes);
      const chunks = new DiskChunkStore(join(dir, 'chunks'), { budget });
      const relay = new RelayChunks({
        dir: join(dir, 'run-chunks'),
        memoryBytes: o.chunkMemoryBytes,
        nodeQuotaBytes: limits.nodeChunkQuotaBytes,
        budget,
        now: o.time?.now,
      });
      const artefacts = new ArtefactStore({
        dir: join(dir, 'artefacts'),
        state,
        budget,
        maxBytes: limits.artefactMaxBytes,
        runMaxBytes: limits.runArtefactBytes,
      });
      const log = o.log ?? pino({ level: 'silent' });
      const link = new Link({
        state,
        chunks,
        relay,
        artefacts,
        stateDir: dir,
        log,
        nodeAuth: o.nodeAuth ?? false,
        limits,
        time: o.time,
      });
      return { link, chunks, dir };
    },
  };
}

/** An OpenSSH public key line (random, never used to sign): its blob starts with its type. */
export function sshKeyLine(comment?: string): string {
  const type = 'ecdsa-sha2-nistp384';
  const len = Buffer.alloc(4);
  len.writeUInt32BE(type.length);
  const blob = Buffer.concat([len, Buffer.from(type), randomBytes(48)]);
  return `${type} ${blob.toString('base64')}${comment === undefined ? '' : ` ${comment}`}`;
}

/** Activate nodes n0…n{count-1} (named site-0…), each heartbeating every `heartbeatIntervalMs`. */
export async function activateNodes(state: LinkState, count: number, heartbeatIntervalMs = 10_000) {
  for (let i = 0; i < count; i++)
    await state.activateNode({ nodeId: `n${i}`, name: `site-${i}`, heartbeatIntervalMs });
}

/** Expect `p` (or calling it) to fail with the PollenError `code`, carrying at least `data`. */
export async function expectCode(p: Promise<unknown> | (() => unknown), code: string, data?: object) {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toMatchObject({
    code,
    ...(data ? { data: expect.objectContaining(data) } : {}),
  });
}
