/**
 * The runs this node takes part in: a slot per run with its app (a ClientApp process, or the
 * embedded app's Context), the instructions queued for it and those not yet answered. Opening a
 * slot in process mode checks the run's bundle against the site's trusted list, then fetches and
 * verifies it; a slot closes when the SuperLink says its run finished.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { bundleHash, type ExtractedBundle, extractBundle, extractedBundle } from '../apps/bundle.js';
import type { RequirementChecks } from '../apps/python-env.js';
import { PollenError } from '../errors.js';
import type { Run as WireRun } from '../gen/pollen/v1/records_pb.js';
import type { Context } from '../sdk/context.js';
import { downloadChunks } from '../transport/chunk-transfer.js';
import type { ChunkTransport } from '../transport/chunk-transport.js';
import { MemoryChunkStore } from '../transport/chunks.js';
import { chunkIdsOf, configFromWire, type WireMessage } from '../transport/wire.js';
import type { Waiters } from '../util/waiters.js';
import { endClientApp } from './app-process.js';
import type { AppSlot } from './clientappio-service.js';
import { call, type FleetClient } from './fleet-call.js';
import { HEARTBEAT_RUNS, type RunWatch } from './fleet-session.js';
import type { NodeTime } from './node-time.js';
import type { GpuAllocator } from './resources.js';

export interface Slot extends AppSlot {
  process?: ChildProcess;
  /** The GPUs given to this run on this node (process mode), released when the slot closes. */
  gpus: number[];
  /** Embedded mode: the run's Context and the queue of instructions being handled. */
  context?: Context;
  handling?: Promise<void>;
  inFlight: Map<string, WireMessage>;
  lastCheck: number;
}

export interface RunSlotsOptions {
  fleet: FleetClient;
  /** The chunk routes of the same SuperLink (the bulk route where it has one). */
  fleetChunks: ChunkTransport;
  time: NodeTime;
  /** Wakes the ClientApps' long polls (a task queued, a slot shut down). */
  tasks: Waiters;
  /** Where bundles are unpacked (WORK_DIR/apps). */
  appsDir: string;
  /** Bundle hashes this site runs; undefined runs any. */
  trustedApps?: readonly string[];
  /** Embedded mode: no bundle and no process; the slot holds the run's Context. */
  embedded: boolean;
  /** Python apps: their requirements checked against the site's interpreter before they start. */
  requirements: RequirementChecks;
  /** The node's GPUs, given to runs. */
  gpus: GpuAllocator;
  /** Start the run's ClientApp process from its unpacked bundle (process mode). */
  startApp(slot: Slot, bundle: ExtractedBundle): ChildProcess;
  /** The run's ClientApp process ended by itself (not shut down). */
  onAppEnded(slot: Slot, why: string): void;
  /** A slot opened: a run to ask about (RunWatch.nextAskAt) may fall due sooner. */
  onOpened?: () => void;
  /** Aborted when the node closes. */
  signal: AbortSignal;
}

/** How often a run is asked about (GetRun) when heartbeats do not report it. */
const RUN_CHECK_MS = 5_000;

export class RunSlots implements RunWatch {
  readonly #slots = new Map<string, Slot>();

  constructor(private readonly o: RunSlotsOptions) {}

  get(runId: string): Slot | undefined {
    return this.#slots.get(runId);
  }

  values(): IterableIterator<Slot> {
    return this.#slots.values();
  }

  /** The run's slot, opened (its bundle fetched, its app started) if it has no live app. */
  async open(runId: string): Promise<Slot> {
    const existing = this.#slots.get(runId);
    if (existing && (this.o.embedded || (existing.process && existing.process.exitCode === null)))
      return existing;
    const { run } = await call(() => this.o.fleet.getRun({ runId }));
    if (this.o.embedded) {
      if (!run) throw new PollenError('RUN_NOT_FOUND', `No run ${runId}`);
      return this.#newSlot(runId, run);
    }
    if (!run?.fab) throw new PollenError('RUN_NOT_FOUND', `Run ${runId} has no app bundle`);
    // The site decides what code runs on its data: with a list, only those bundle hashes.
    if (this.o.trustedApps && !this.o.trustedApps.includes(run.fab.hash))
      throw new PollenError(
        'APP_NOT_TRUSTED',
        `This site does not run app ${run.fab.name} (${run.fab.hash})`,
      );
    const bundle = await this.#fetchBundle(run);
    const { manifest } = bundle;
    // Refused before the app starts: what the site's Python lacks, then GPUs none of which is free.
    if (manifest.runtime === 'python')
      await this.o.requirements.require(manifest.requirements ?? [], `${manifest.name} ${manifest.version}`);
    const { gpus } = this.o;
    const given = gpus.acquire(runId, gpus.wanted(configFromWire(run.runConfig)));
    // A slot whose app ended keeps its queue and token (and GPUs); its app starts again.
    const slot = existing ?? this.#newSlot(runId, run);
    slot.gpus = given;
    let child: ChildProcess;
    try {
      child = this.o.startApp(slot, bundle);
    } catch (e) {
      this.close(slot);
      throw e;
    }
    slot.process = child;
    child.once('exit', (code, signal) => {
      if (slot.shutdown || this.o.signal.aborted) return;
      slot.process = undefined;
      this.o.onAppEnded(slot, signal ? `signal ${signal}` : `exit code ${code}`);
    });
    // A command that cannot be started emits only 'error' (no 'exit').
    child.once('error', (e) => {
      if (slot.shutdown || this.o.signal.aborted || slot.process !== child) return;
      slot.process = undefined;
      this.o.onAppEnded(slot, `it did not start: ${e.message}`);
    });
    return slot;
  }

  #newSlot(runId: string, run: WireRun): Slot {
    const slot: Slot = {
      runId,
      token: randomBytes(32).toString('base64url'),
      queue: [],
      shutdown: false,
      runConfig: run.runConfig,
      gpus: [],
      inFlight: new Map(),
      lastCheck: this.o.time.now(),
    };
    this.#slots.set(runId, slot);
    this.o.onOpened?.();
    return slot;
  }

  async #fetchBundle(run: WireRun): Promise<ExtractedBundle> {
    const { fleet, fleetChunks } = this.o;
    // A bundle this node unpacked before (after checking its hash) is not fetched again.
    const cached = extractedBundle(run.fab!.hash, this.o.appsDir);
    if (cached) return cached;
    const { fab } = await call(() => fleet.getFab({ hash: run.fab!.hash }));
    if (!fab) throw new PollenError('BUNDLE_NOT_FOUND', `No bundle ${run.fab!.hash}`);
    const store = new MemoryChunkStore();
    await call(() => downloadChunks(fleetChunks, fab.chunkIds, store));
    const parts: Uint8Array[] = [];
    for (const id of fab.chunkIds) parts.push((await store.get(id))!);
    const bytes = Buffer.concat(parts);
    // Run exactly the bundle the run names (and that --trusted-app may have vetted), whatever
    // chunk list the SuperLink answered with.
    if (bundleHash(bytes) !== run.fab!.hash)
      throw new PollenError(
        'BUNDLE_INVALID',
        `The bundle received for run ${run.runId} does not hash to ${run.fab!.hash}`,
      );
    return extractBundle(bytes, this.o.appsDir);
  }

  /** The run is over: its app is told to shut down (and ended if it does not), the slot goes. */
  close(slot: Slot): void {
    slot.shutdown = true;
    this.o.tasks.notify(slot.runId);
    if (slot.process) endClientApp(slot.process);
    this.#slots.delete(slot.runId);
    this.o.gpus.release(slot.runId);
  }

  /** Closing the node: every app is told to shut down; the live app processes. */
  shutDownAll(): ChildProcess[] {
    const apps: ChildProcess[] = [];
    for (const slot of this.#slots.values()) {
      if (slot.process && slot.process.exitCode === null) apps.push(slot.process);
      slot.shutdown = true;
      this.o.tasks.notify(slot.runId);
    }
    return apps;
  }

  /** The chunks that instructions still queued or unanswered need. */
  neededChunks(): Set<string> {
    const needed = new Set<string>();
    for (const slot of this.#slots.values())
      for (const m of [...slot.inFlight.values(), ...slot.queue])
        for (const id of chunkIdsOf(m)) needed.add(id);
    return needed;
  }

  // ---- RunWatch: what the fleet session reports and asks ----------------------------------------
  openRuns(): string[] {
    return [...this.#slots.values()].filter((s) => !s.shutdown).map((s) => s.runId);
  }

  reported(checked: string[], finished: string[]): void {
    const now = this.o.time.now();
    for (const runId of checked) {
      const slot = this.#slots.get(runId);
      if (slot) slot.lastCheck = now;
    }
    for (const runId of finished) {
      const slot = this.#slots.get(runId);
      if (slot) this.close(slot);
    }
  }

  /** Older SuperLinks (no run status on heartbeats), or past 64 runs: GetRun per run every 5 s. */
  async askUncovered(onHeartbeat: boolean): Promise<void> {
    if (onHeartbeat && this.#slots.size <= HEARTBEAT_RUNS) return;
    const { fleet, time } = this.o;
    for (const slot of this.#slots.values()) {
      if (slot.shutdown || time.now() < slot.lastCheck + RUN_CHECK_MS) continue;
      slot.lastCheck = time.now();
      const { run } = await call(() => fleet.getRun({ runId: slot.runId })).catch(() => ({ run: undefined }));
      if (run && run.status === 'finished') this.close(slot);
    }
  }

  nextAskAt(onHeartbeat: boolean): number {
    let next = Number.POSITIVE_INFINITY;
    if (onHeartbeat && this.#slots.size <= HEARTBEAT_RUNS) return next;
    for (const slot of this.#slots.values())
      if (!slot.shutdown) next = Math.min(next, slot.lastCheck + RUN_CHECK_MS);
    return next;
  }
}
