/**
 * `pollen supernode`: a site's participant. It connects outbound to the SuperLink's Fleet API
 * with mutual TLS (and, when the federation asks for it, its registered OpenSSH key), sends
 * heartbeats, pulls instructions, runs each run's ClientApp in a child process that talks to it
 * over ClientAppIo on loopback, and pushes the replies back. It reconnects with backoff and keeps
 * its node id: the id comes from its certificate or key, never from the connection.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { appEnvironment } from '../apps/app-env.js';
import { bundleHash, extractBundle } from '../apps/bundle.js';
import { isPollenError, PollenError } from '../errors.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { MessageSchema, type Run as WireRun } from '../gen/pollen/v1/records_pb.js';
import type { SshPrivateKey } from '../pki/openssh.js';
import type { ClientApp } from '../sdk/app.js';
import { type Context, createContext, type UserConfigValue } from '../sdk/context.js';
import { downloadChunks, uploadChunks } from '../transport/chunk-transfer.js';
import { type ChunkStore, DiskChunkStore, MemoryChunkStore } from '../transport/chunks.js';
import { fromConnectError } from '../transport/errors.js';
import { RequestSigner } from '../transport/node-request-auth.js';
import { openChannel, type RpcChannel } from '../transport/rpc-client.js';
import { type RpcServer, startRpcServer } from '../transport/rpc-server.js';
import type { TlsMaterial } from '../transport/tls.js';
import {
  chunkIdsOf,
  configFromWire,
  configToWire,
  messageFromWire,
  messageToWire,
  type WireMessage,
} from '../transport/wire.js';
import { Waiters } from '../util/waiters.js';
import {
  type AppSlot,
  appTokenBulkAuth,
  appTokenInterceptor,
  clientAppIoRoutes,
} from './clientappio-service.js';
import { fleetBulkHeaders, fleetClientAuth, type SessionHolder } from './fleet-auth.js';

const RUNNER = fileURLToPath(new URL('../../dist/apps/runner.js', import.meta.url));

export interface SuperNodeOptions {
  /** https://HOST:PORT of the Fleet API. */
  superlink: string;
  /** Our enrolled certificate, key and the project root; undefined = insecure development mode. */
  tls?: TlsMaterial;
  /** Name for logs (the certificate name in secure mode). */
  name: string;
  /** Sign with this key when the SuperLink authenticates node keys. */
  authKey?: SshPrivateKey;
  nodeConfig?: Record<string, UserConfigValue>;
  workDir: string;
  heartbeatIntervalMs?: number;
  /**
   * Long poll: how long one PullMessages may wait on the SuperLink for an instruction (default
   * 20 s; the SuperLink caps it at 30 s). 0 turns long polling off (a poll every pollIntervalMs).
   */
  pollWaitMs?: number;
  /**
   * Pause after an empty answer that came sooner than this (default 500 ms): the poll interval
   * when long polling is off, and what keeps a node from spinning against an older SuperLink that
   * ignores wait_ms and answers at once.
   */
  pollIntervalMs?: number;
  clientAppIo?: { host: string; port: number };
  log: Logger;
  /** Keep chunks in memory instead of the work folder (small models, many nodes). */
  memoryChunks?: boolean;
  /** Run only app bundles with these hashes (`sha256:HEX`); undefined runs any app of the federation. */
  trustedApps?: readonly string[];
  /**
   * Embedded mode, for tests, benchmarks and lightweight devices: handle every run's
   * instructions with this ClientApp inside the SuperNode's own process (no app bundle is fetched,
   * no child process, no ClientAppIo round trips). The default, without it, runs each run's
   * bundled ClientApp in its own process, isolated from the node's credentials.
   */
  app?: ClientApp;
  /** Called with each state change, for progress displays and tests. */
  onEvent?: (e: SuperNodeEvent) => void;
}

export type SuperNodeEvent =
  | { kind: 'connected'; nodeId: string }
  | { kind: 'disconnected'; error: string; retryInMs: number }
  | { kind: 'task'; runId: string; messageId: string; messageType: string }
  | { kind: 'reply'; runId: string; messageId: string; error?: string };

export interface SuperNode {
  readonly nodeId: string;
  /** Empty in embedded mode (`app`), which has no ClientAppIo. */
  readonly clientAppIoUrl: string;
  /** Resolves once connected (activated) the first time. */
  readonly ready: Promise<string>;
  close(): Promise<void>;
}

interface Slot extends AppSlot {
  process?: ChildProcess;
  /** Embedded mode: the run's Context and the queue of instructions being handled. */
  context?: Context;
  handling?: Promise<void>;
  inFlight: Map<string, WireMessage>;
  lastCheck: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/**
 * Refusals that pass by themselves: the SuperLink is away, or this node went past its request
 * rate (the SuperLink says when to retry). Retried with backoff; the connection stays.
 */
const transient = (e: unknown): boolean =>
  isPollenError(e) && (e.code === 'UNAVAILABLE' || e.code === 'RATE_LIMITED');

export async function startSuperNode(o: SuperNodeOptions): Promise<SuperNode> {
  const workDir = resolve(o.workDir);
  mkdirSync(workDir, { recursive: true, mode: 0o700 });
  const log = o.log;
  const chunks: ChunkStore = o.memoryChunks
    ? new MemoryChunkStore()
    : // Verified once on arrival (from the app or the SuperLink); forwarding does not hash again.
      new DiskChunkStore(join(workDir, 'chunks'), { maxChunkBytes: 4 << 20, verifyReads: false });
  const holder: SessionHolder = {};
  const signer = o.authKey ? new RequestSigner(o.authKey) : undefined;
  const channel: RpcChannel = openChannel({
    baseUrl: o.superlink,
    tls: o.tls ? { ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key } : undefined,
    interceptors: [fleetClientAuth({ signer, holder, insecureName: o.tls ? undefined : o.name })],
    bulkHeaders: fleetBulkHeaders({ signer, holder, insecureName: o.tls ? undefined : o.name }),
  });
  const fleet = channel.client(Fleet);
  const fleetChunks = channel.chunks(fleet);
  const heartbeatMs = o.heartbeatIntervalMs ?? 10_000;
  const pollMs = o.pollIntervalMs ?? 500;
  const pollWaitMs = Math.max(0, o.pollWaitMs ?? 20_000);
  const slots = new Map<string, Slot>();
  const tasks = new Waiters();
  const nodeConfigWire = configToWire(o.nodeConfig ?? {});
  let nodeId = '';
  let closing = false;
  let connected = false;
  let resolveReady: (id: string) => void = () => {};
  const ready = new Promise<string>((r) => {
    resolveReady = r;
  });

  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      throw fromConnectError(e);
    }
  };

  // ---- ClientAppIo --------------------------------------------------------------------------
  let appIo: RpcServer | undefined;
  const forward = async (slot: AppSlot, reply: WireMessage): Promise<void> => {
    const s = slot as Slot;
    const md = reply.metadata;
    if (!md || !s.inFlight.has(md.replyToMessageId))
      throw new PollenError('MESSAGE_INVALID', 'The reply answers no instruction this app received');
    const instruction = s.inFlight.get(md.replyToMessageId);
    s.inFlight.delete(md.replyToMessageId);
    await pushReply(reply);
    if (instruction) await dropChunks(chunkIdsOf(instruction));
  };
  /** Forget an answered instruction's chunks unless another pending instruction needs them. */
  async function dropChunks(ids: string[]): Promise<void> {
    const needed = new Set<string>();
    for (const slot of slots.values())
      for (const m of [...slot.inFlight.values(), ...slot.queue])
        for (const id of chunkIdsOf(m)) needed.add(id);
    for (const id of ids) if (!needed.has(id)) await chunks.delete(id).catch(() => {});
  }
  // Embedded mode has no app processes, so no ClientAppIo.
  if (!o.app)
    appIo = await startRpcServer({
      log: o.log,
      host: o.clientAppIo?.host ?? '127.0.0.1',
      port: o.clientAppIo?.port ?? 0,
      routes: clientAppIoRoutes({
        nodeId: () => nodeId,
        nodeConfig: nodeConfigWire,
        slot: (runId) => slots.get(runId),
        chunks,
        onResult: forward,
        tasks,
      }),
      interceptors: [appTokenInterceptor({ slot: (runId: string) => slots.get(runId) })],
      bulk: { store: chunks, authorize: appTokenBulkAuth({ slot: (runId: string) => slots.get(runId) }) },
    });

  async function pushReply(reply: WireMessage, own?: Map<string, Uint8Array>): Promise<void> {
    const ids = chunkIdsOf(reply);
    const runId = reply.metadata?.runId ?? '';
    for (let attempt = 0; ; attempt++) {
      try {
        // Into the run's scope on the SuperLink, which relays them unhashed to the ServerApp.
        if (ids.length > 0)
          await call(() => uploadChunks(fleetChunks, own ?? { ids, source: chunks }, { scope: { runId } }));
        const { results } = await call(() => fleet.pushMessages({ messages: [reply] }));
        const r = results[0];
        o.onEvent?.({
          kind: 'reply',
          runId,
          messageId: reply.metadata?.replyToMessageId ?? '',
          error: r?.errorCode || undefined,
        });
        if (r?.errorCode) log.warn({ runId, code: r.errorCode, reason: r.errorMessage }, 'reply refused');
        for (const id of ids) await chunks.delete(id).catch(() => {});
        return;
      } catch (e) {
        if (closing || attempt >= 5) throw e;
        // The session ran out between renewals (e.g. the machine slept): open one and retry.
        if (isPollenError(e) && e.code === 'NODE_SESSION_EXPIRED' && holder.session) {
          await renewSession();
          continue;
        }
        if (isPollenError(e) && !transient(e)) throw e;
        await sleep(Math.min(500 * 2 ** attempt, 10_000));
      }
    }
  }

  function errorReply(instruction: WireMessage, code: string, reason: string): WireMessage {
    const md = instruction.metadata!;
    return create(MessageSchema, {
      metadata: {
        runId: md.runId,
        messageId: randomBytes(16).toString('hex'),
        srcNodeId: nodeId,
        dstNodeId: md.srcNodeId,
        replyToMessageId: md.messageId,
        groupId: md.groupId,
        ttlSeconds: md.ttlSeconds,
        messageType: md.messageType,
        createdAt: BigInt(Date.now()),
      },
      body: { case: 'error', value: { code, reason } },
    });
  }

  // ---- Runs and their app processes -----------------------------------------------------------
  async function openSlot(runId: string): Promise<Slot> {
    const existing = slots.get(runId);
    if (o.app) return existing ?? (await openEmbeddedSlot(runId));
    if (existing?.process && existing.process.exitCode === null) return existing;
    const { run } = await call(() => fleet.getRun({ runId }));
    if (!run?.fab) throw new PollenError('RUN_NOT_FOUND', `Run ${runId} has no app bundle`);
    // The site decides what code runs on its data: with a list, only those bundle hashes.
    if (o.trustedApps && !o.trustedApps.includes(run.fab.hash))
      throw new PollenError(
        'APP_NOT_TRUSTED',
        `This site does not run app ${run.fab.name} (${run.fab.hash})`,
      );
    const bundle = await fetchBundle(run);
    const slot: Slot = existing ?? {
      runId,
      token: randomBytes(32).toString('base64url'),
      queue: [],
      shutdown: false,
      runConfig: run.runConfig,
      inFlight: new Map(),
      lastCheck: Date.now(),
    };
    slots.set(runId, slot);
    const child = spawn(process.execPath, [RUNNER, 'clientapp'], {
      cwd: bundle.dir,
      env: appEnvironment({
        POLLEN_APPIO_URL: appIo!.url,
        POLLEN_RUN_ID: runId,
        POLLEN_APP_TOKEN: slot.token,
        POLLEN_APP_PATH: bundle.clientappPath,
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    slot.process = child;
    for (const [stream, level] of [
      [child.stdout!, 'info'],
      [child.stderr!, 'warn'],
    ] as const)
      createInterface({ input: stream }).on('line', (line) => log[level]({ runId, app: 'clientapp' }, line));
    child.once('exit', (code, signal) => {
      if (slot.shutdown || closing) return;
      const why = signal ? `signal ${signal}` : `exit code ${code}`;
      log.warn({ runId, why }, 'ClientApp process ended');
      // Tell the ServerApp at once instead of letting it wait for the timeout.
      for (const instruction of [...slot.inFlight.values(), ...slot.queue])
        pushReply(
          errorReply(instruction, 'CLIENT_APP_CRASHED', `The ClientApp process ended (${why})`),
        ).catch(() => {});
      slot.inFlight.clear();
      slot.queue.length = 0;
      slot.process = undefined;
    });
    return slot;
  }

  async function fetchBundle(run: WireRun) {
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
    return extractBundle(bytes, join(workDir, 'apps'));
  }

  async function openEmbeddedSlot(runId: string): Promise<Slot> {
    const { run } = await call(() => fleet.getRun({ runId }));
    if (!run) throw new PollenError('RUN_NOT_FOUND', `No run ${runId}`);
    const slot: Slot = {
      runId,
      token: randomBytes(32).toString('base64url'),
      queue: [],
      shutdown: false,
      runConfig: run.runConfig,
      inFlight: new Map(),
      lastCheck: Date.now(),
      handling: Promise.resolve(),
    };
    slots.set(runId, slot);
    return slot;
  }

  /** Embedded mode: one instruction through the in-process ClientApp, in arrival order per run. */
  function handleEmbedded(app: ClientApp, slot: Slot, message: WireMessage): void {
    slot.handling = (slot.handling ?? Promise.resolve()).then(async () => {
      let reply: WireMessage;
      let own: Map<string, Uint8Array> | undefined;
      try {
        slot.context ??= createContext({
          runId: slot.runId,
          nodeId,
          nodeConfig: o.nodeConfig ?? {},
          runConfig: configFromWire(slot.runConfig),
        });
        const incoming = await messageFromWire(message, (id) => chunks.get(id));
        ({ wire: reply, chunks: own } = messageToWire(await app.handle(incoming, slot.context)));
      } catch (e) {
        const err = isPollenError(e) ? e : new PollenError('INTERNAL', String(e));
        reply = errorReply(message, err.code, err.message);
      }
      if (slot.shutdown || closing) return;
      await pushReply(reply, own).catch((e) =>
        log.warn({ runId: slot.runId, reason: String(e) }, 'reply not delivered'),
      );
    });
  }

  async function handleInstruction(message: WireMessage): Promise<void> {
    const md = message.metadata;
    if (!md) return;
    o.onEvent?.({ kind: 'task', runId: md.runId, messageId: md.messageId, messageType: md.messageType });
    try {
      const slot = await openSlot(md.runId);
      const ids = chunkIdsOf(message);
      const missing = await chunks.missing(ids);
      if (missing.length > 0)
        await call(() => downloadChunks(fleetChunks, missing, chunks, { scope: { runId: md.runId } }));
      if (o.app) {
        handleEmbedded(o.app, slot, message);
        return;
      }
      slot.inFlight.set(md.messageId, message);
      slot.queue.push(message);
      tasks.notify(md.runId);
    } catch (e) {
      const err = isPollenError(e) ? e : new PollenError('INTERNAL', String(e));
      log.warn(
        { runId: md.runId, code: err.code, reason: err.message },
        'instruction not delivered to the app',
      );
      await pushReply(errorReply(message, err.code, err.message)).catch(() => {});
    }
  }

  /** Older SuperLinks (no run status on heartbeats): ask with GetRun, per run, every 5 s. */
  async function checkRuns(): Promise<void> {
    for (const slot of slots.values()) {
      if (slot.shutdown || Date.now() - slot.lastCheck < 5_000) continue;
      slot.lastCheck = Date.now();
      const { run } = await call(() => fleet.getRun({ runId: slot.runId })).catch(() => ({ run: undefined }));
      if (run && run.status === 'finished') closeSlot(slot);
    }
  }

  function closeSlot(slot: Slot): void {
    slot.shutdown = true;
    tasks.notify(slot.runId);
    const child = slot.process;
    if (child && child.exitCode === null) {
      setTimeout(() => child.kill('SIGTERM'), 2_000).unref();
      setTimeout(() => child.kill('SIGKILL'), 7_000).unref();
    }
    slots.delete(slot.runId);
  }

  // ---- Connection loop ------------------------------------------------------------------------
  // Two tasks share the node's one HTTP/2 connection (each call is its own stream):
  //  - the poll loop: activate, then long-poll PullMessages (wait_ms = pollWaitMs), handle what
  //    comes, poll again;
  //  - the ticker (every second, independent of the poll): a Heartbeat when one is due, so a poll
  //    waiting on the SuperLink never delays one. The heartbeat names the node's open runs and
  //    the answer says which finished (their slots close); with an older SuperLink, which does not
  //    answer that, the ticker asks with GetRun per run every 5 s (checkRuns).
  // A pull does not count as a heartbeat: liveness stays one explicit call per interval, which
  // the SuperLink keeps in memory.
  let lastHeartbeat = 0;
  /** The long poll in flight, aborted to reconnect or to close. */
  let poll: AbortController | undefined;
  /** Why the ticker broke the connection (the poll loop reports it and reconnects). */
  let dropped: PollenError | 'reactivate' | undefined;

  /** This process, for the SuperLink: a new one tells it the instructions we held are lost. */
  const instanceId = randomBytes(8).toString('hex');
  /** When to open the next node-key session (before this one expires). */
  let renewSessionAt = Number.POSITIVE_INFINITY;

  /** ActivateNode: signed with the node key in node-key mode, it also opens a fresh session. */
  async function activateCall() {
    const res = await call(() =>
      fleet.activateNode({ heartbeatIntervalMs: heartbeatMs, name: o.name, instanceId }),
    );
    holder.session = res.session
      ? { sessionId: res.session.sessionId, secret: res.session.secret }
      : undefined;
    // Renew with a quarter of the session's life left (at most 10 minutes early), so a
    // long-running node never sends a call on an expired session.
    const now = Date.now();
    const life = res.session ? Number(res.session.expiresAt) - now : Number.POSITIVE_INFINITY;
    renewSessionAt = now + Math.max(life - Math.min(600_000, life / 4), 1_000);
    return res;
  }

  /** A fresh session on the live connection (the old one stays valid until it expires). */
  async function renewSession(): Promise<void> {
    await activateCall();
    log.debug({ nodeId }, 'node-key session renewed');
  }

  async function activate(): Promise<void> {
    const res = await activateCall();
    nodeId = res.nodeId;
    connected = true;
    dropped = undefined;
    // Activation counts as the first heartbeat.
    lastHeartbeat = Date.now();
    log.info({ nodeId, superlink: o.superlink }, 'connected to the SuperLink');
    o.onEvent?.({ kind: 'connected', nodeId });
    resolveReady(nodeId);
  }

  /** Drop the connection from outside the poll loop: it wakes, then re-activates. */
  function drop(why: PollenError | 'reactivate'): void {
    if (!connected) return;
    connected = false;
    dropped = why;
    poll?.abort();
  }

  /** The SuperLink reports finished runs on heartbeats (runs_checked). */
  let runsOnHeartbeat = false;
  let ticking = false;
  async function tick(): Promise<void> {
    if (ticking || closing || !connected) return;
    ticking = true;
    try {
      if (holder.session && Date.now() >= renewSessionAt)
        await renewSession().catch((e) => {
          const err = isPollenError(e) ? e : fromConnectError(e);
          if (err.code !== 'UNAVAILABLE') drop(err);
        });
      if (Date.now() - lastHeartbeat >= heartbeatMs) {
        lastHeartbeat = Date.now();
        try {
          const open = [...slots.values()].filter((s) => !s.shutdown).map((s) => s.runId);
          const res = await call(() =>
            fleet.heartbeat(
              { heartbeatIntervalMs: heartbeatMs, runIds: open.slice(0, 64) },
              { timeoutMs: heartbeatMs },
            ),
          );
          if (!res.known) drop('reactivate');
          else if (res.runsChecked) {
            runsOnHeartbeat = true;
            const now = Date.now();
            for (const runId of open.slice(0, 64)) {
              const slot = slots.get(runId);
              if (slot) slot.lastCheck = now;
            }
            for (const runId of res.finishedRunIds) {
              const slot = slots.get(runId);
              if (slot) closeSlot(slot);
            }
          }
        } catch (e) {
          const err = isPollenError(e) ? e : fromConnectError(e);
          // Unreachable: the poll sees it too and reconnects with backoff. Past the rate: the next
          // one goes through. Refused (an expired session, a withdrawn key): break the connection now.
          if (!transient(err)) drop(err);
          else log.debug({ code: err.code, reason: err.message }, 'heartbeat failed');
        }
      }
      // The SuperLink answers run status on heartbeats; older ones are asked with GetRun.
      if (connected && (!runsOnHeartbeat || slots.size > 64)) await checkRuns();
    } finally {
      ticking = false;
    }
  }
  const ticker = setInterval(() => void tick(), Math.min(1_000, heartbeatMs));

  async function loop(): Promise<void> {
    let backoff = 500;
    while (!closing) {
      try {
        if (!connected) await activate();
        backoff = 500;
        const started = Date.now();
        const ac = new AbortController();
        poll = ac;
        const { messages } = await call(() =>
          fleet.pullMessages(
            { maxMessages: 16, waitMs: pollWaitMs },
            // A bound in case the connection dies silently (HTTP/2 pings also catch that).
            { signal: ac.signal, timeoutMs: pollWaitMs > 0 ? pollWaitMs + 15_000 : undefined },
          ),
        ).finally(() => {
          if (poll === ac) poll = undefined;
        });
        for (const m of messages) await handleInstruction(m);
        // Long polling off, or a SuperLink that ignores wait_ms: wait out the poll interval.
        const early = pollMs - (Date.now() - started);
        if (messages.length === 0 && early > 0 && !closing) await sleep(early);
      } catch (e) {
        if (closing) break;
        // The ticker broke the connection (aborting the poll): act on its reason.
        const why = dropped;
        dropped = undefined;
        if (why === 'reactivate') continue;
        const err = why ?? (isPollenError(e) ? e : fromConnectError(e));
        const retryInMs = Math.round(backoff * (0.75 + Math.random() * 0.5));
        if (err.code === 'RATE_LIMITED' && connected) {
          // Past the request rate: wait, then poll again on the same connection.
          log.warn({ code: err.code, reason: err.message, retryInMs }, 'over the request rate; retrying');
        } else {
          connected = false;
          if (err.code === 'NODE_SESSION_EXPIRED') continue;
          log.warn(
            { code: err.code, reason: err.message, retryInMs },
            'SuperLink unreachable or refused; retrying',
          );
          o.onEvent?.({ kind: 'disconnected', error: `${err.code}: ${err.message}`, retryInMs });
        }
        await sleep(retryInMs);
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  }
  const running = loop();

  return {
    get nodeId() {
      return nodeId;
    },
    clientAppIoUrl: appIo?.url ?? '',
    ready,
    async close() {
      closing = true;
      clearInterval(ticker);
      poll?.abort();
      const apps = [...slots.values()].flatMap((s) =>
        s.process && s.process.exitCode === null ? [s.process] : [],
      );
      for (const slot of [...slots.values()]) {
        slot.shutdown = true;
        tasks.notify(slot.runId);
      }
      await running;
      if (connected) await fleet.deactivateNode({}).catch(() => {});
      channel.close();
      // The apps were told to shut down; give them a moment, then make sure none outlives us.
      await Promise.race([
        Promise.all(apps.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r))))),
        new Promise((r) => setTimeout(r, 2_000).unref()),
      ]);
      for (const c of apps) if (c.exitCode === null) c.kill('SIGKILL');
      await appIo?.close();
    },
  };
}
