/**
 * `pollen supernode`: a site's participant. It connects outbound to the SuperLink's Fleet API
 * with mutual TLS (and, when the federation asks for it, its registered OpenSSH key), sends
 * heartbeats, pulls instructions, runs each run's ClientApp in a child process that talks to it
 * over ClientAppIo on loopback, and pushes the replies back. It reconnects with backoff and keeps
 * its node id: the id comes from its certificate or key, never from the connection. A refusal
 * that no retry changes (not registered, revoked, another CA, a wrong address) stops it instead:
 * `failed` says why.
 *
 * This is the composition root: the fleet session (fleet-session.ts: activation, session
 * renewal, heartbeats, the poll loop), the run slots (run-slots.ts, app-process.ts), instruction
 * delivery (instructions.ts), replies (replies.ts) and ClientAppIo (clientappio-service.ts).
 */
import { setMaxListeners } from 'node:events';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { defaultPython, RequirementChecks } from '../apps/python-env.js';
import type { PollenError } from '../errors.js';
import { Fleet } from '../gen/pollen/v1/fleet_pb.js';
import { type OpsServer, startOpsServer } from '../observability/ops-server.js';
import { componentRegistry, notAfterOf } from '../observability/registry.js';
import { RpcMetrics } from '../observability/rpc-metrics.js';
import { superNodeMetrics } from '../observability/supernode-metrics.js';
import type { SshPrivateKey } from '../pki/openssh.js';
import type { ClientApp } from '../sdk/app.js';
import type { UserConfigValue } from '../sdk/context.js';
import { type ChunkStore, DiskChunkStore, MemoryChunkStore } from '../transport/chunks.js';
import { RequestSigner } from '../transport/node-request-auth.js';
import { openChannel } from '../transport/rpc-client.js';
import { type RpcServer, startRpcServer } from '../transport/rpc-server.js';
import type { TlsMaterial } from '../transport/tls.js';
import { configToWire } from '../transport/wire.js';
import { Waiters } from '../util/waiters.js';
import { defaultRunner, type RunnerEntry, reapClientApps, spawnClientApp } from './app-process.js';
import {
  appTokenBulkAuth,
  appTokenInterceptor,
  clientAppIoFastChunks,
  clientAppIoRoutes,
} from './clientappio-service.js';
import { fleetBulkHeaders, fleetClientAuth, type SessionHolder } from './fleet-auth.js';
import { explainFleetFailure, fleetEndpoint } from './fleet-call.js';
import { FleetSession } from './fleet-session.js';
import { Instructions } from './instructions.js';
import { nodeTime } from './node-time.js';
import { Replies } from './replies.js';
import { GpuAllocator, type NodeResources } from './resources.js';
import { RunSlots } from './run-slots.js';

export type { RunnerEntry } from './app-process.js';

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
  /** Where `/metrics`, `/healthz` and `/readyz` are served (ops-server.ts); undefined: nowhere. */
  metrics?: { host: string; port: number };
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
  /**
   * The app runner started for each run's ClientApp (process mode). Default: `apps/runner.js`
   * beside this module in a build, `apps/runner.ts` through tsx from source.
   */
  runner?: RunnerEntry;
  /** The interpreter of Python apps (default: POLLEN_PYTHON, else `python3` on PATH). */
  python?: string;
  /** What this node gives runs: GPUs (each run its own) and a CPU count. */
  resources?: NodeResources;
  /** Runs may share GPUs (default: each GPU serves one run at a time). */
  shareGpus?: boolean;
  /** Called with each state change, for progress displays and tests. */
  onEvent?: (e: SuperNodeEvent) => void;
  /** The clock, epoch ms (default Date.now): session renewals, heartbeats, run checks. */
  clock?: () => number;
  /** Every wait of the node: poll pacing, backoff, retries, the ticker (default: a timer). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Backoff jitter, uniform in [0, 1) (default Math.random). */
  random?: () => number;
}

export type SuperNodeEvent =
  | { kind: 'connected'; nodeId: string }
  | { kind: 'disconnected'; error: string; retryInMs: number }
  | { kind: 'task'; runId: string; messageId: string; messageType: string }
  | { kind: 'reply'; runId: string; messageId: string; error?: string }
  | { kind: 'refused'; error: PollenError };

export interface SuperNode {
  readonly nodeId: string;
  /** Empty in embedded mode (`app`), which has no ClientAppIo. */
  readonly clientAppIoUrl: string;
  /** The ops listener (`/metrics`, `/healthz`, `/readyz`); undefined when off. */
  readonly opsUrl: string | undefined;
  /** Resolves once connected (activated) the first time. */
  readonly ready: Promise<string>;
  /**
   * Resolves when the SuperLink refused this node for good (fleet-call.ts `permanent`): the node
   * stopped trying; close() it. Never resolves otherwise.
   */
  readonly failed: Promise<PollenError>;
  close(): Promise<void>;
}

export async function startSuperNode(o: SuperNodeOptions): Promise<SuperNode> {
  const workDir = resolve(o.workDir);
  mkdirSync(workDir, { recursive: true, mode: 0o700 });
  const { log, onEvent } = o;
  const time = nodeTime(o);
  const runner = o.app ? undefined : (o.runner ?? defaultRunner());
  const python = o.python ?? defaultPython();
  const chunks: ChunkStore = o.memoryChunks
    ? new MemoryChunkStore()
    : // Verified once on arrival (from the app or the SuperLink); forwarding does not hash again.
      new DiskChunkStore(join(workDir, 'chunks'), { maxChunkBytes: 4 << 20, verifyReads: false });
  const holder: SessionHolder = {};
  const auth = {
    signer: o.authKey ? new RequestSigner(o.authKey, { now: time.now }) : undefined,
    holder,
    insecureName: o.tls ? undefined : o.name,
  };
  const channel = openChannel({
    baseUrl: o.superlink,
    tls: o.tls ? { ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key } : undefined,
    interceptors: [fleetClientAuth(auth)],
    bulkHeaders: fleetBulkHeaders(auth),
  });
  const fleet = channel.client(Fleet);
  const fleetChunks = channel.chunks(fleet);
  const heartbeatMs = o.heartbeatIntervalMs ?? 10_000;
  const tasks = new Waiters();
  const closing = new AbortController();
  const signal = closing.signal;
  // Every wait of the node listens to it, e.g. the retries of many replies at once.
  setMaxListeners(0, signal);
  let appIo: RpcServer | undefined;
  const gpus = new GpuAllocator(o.resources?.gpus ?? [], o.shareGpus);
  const registry = o.metrics ? componentRegistry('supernode') : undefined;
  const rpc = registry && new RpcMetrics(registry);

  const slots: RunSlots = new RunSlots({
    fleet,
    fleetChunks,
    time,
    tasks,
    appsDir: join(workDir, 'apps'),
    trustedApps: o.trustedApps,
    embedded: o.app !== undefined,
    requirements: new RequirementChecks(python),
    gpus,
    startApp: (slot, bundle) =>
      spawnClientApp({
        runner: runner!,
        python,
        appIoUrl: appIo!.url,
        slot,
        bundle,
        cpu: o.resources?.cpu,
        gpus: slot.gpus,
        log,
      }),
    onAppEnded: (slot, why) => instructions.appEnded(slot, why),
    onOpened: () => session.reschedule(),
    signal,
  });
  let refusedWith: (e: PollenError) => void = () => {};
  const failed = new Promise<PollenError>((r) => {
    refusedWith = r;
  });
  const endpoint = fleetEndpoint(o.superlink, o.tls && { ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key });
  const session = new FleetSession({
    fleet,
    holder,
    explain: (e) => explainFleetFailure(e, endpoint, o.authKey !== undefined),
    name: o.name,
    superlink: o.superlink,
    heartbeatMs,
    pollWaitMs: Math.max(0, o.pollWaitMs ?? 20_000),
    pollMs: o.pollIntervalMs ?? 500,
    time,
    log,
    signal,
    runs: slots,
    ...(onEvent && {
      onConnected: (nodeId: string) => onEvent({ kind: 'connected', nodeId }),
      onDisconnected: (error: string, retryInMs: number) =>
        onEvent({ kind: 'disconnected', error, retryInMs }),
    }),
    onRefused: (error) => {
      onEvent?.({ kind: 'refused', error });
      refusedWith(error);
    },
  });
  const nodeId = () => session.nodeId;
  const replies = new Replies({
    fleet,
    fleetChunks,
    chunks,
    session,
    nodeId,
    time,
    log,
    signal,
    onReply: (runId, messageId, error) => onEvent?.({ kind: 'reply', runId, messageId, error }),
  });
  const instructions: Instructions = new Instructions({
    fleetChunks,
    chunks,
    slots,
    replies,
    tasks,
    app: o.app,
    nodeId,
    nodeConfig: o.nodeConfig ?? {},
    log,
    signal,
    onTask: (runId, messageId, messageType) => onEvent?.({ kind: 'task', runId, messageId, messageType }),
  });

  // Embedded mode has no app processes, so no ClientAppIo.
  if (!o.app) {
    const slot = (runId: string) => slots.get(runId);
    appIo = await startRpcServer({
      log,
      host: o.clientAppIo?.host ?? '127.0.0.1',
      port: o.clientAppIo?.port ?? 0,
      routes: clientAppIoRoutes({
        nodeId,
        nodeConfig: configToWire(o.nodeConfig ?? {}),
        slot,
        chunks,
        onResult: (s, reply) => instructions.forward(s, reply),
        tasks,
      }),
      interceptors: [appTokenInterceptor({ slot })],
      bulk: { store: chunks, authorize: appTokenBulkAuth({ slot }) },
      fastStreams: clientAppIoFastChunks({ slot, chunks }),
      ...(rpc && { observe: rpc.observer('clientappio') }),
    });
    rpc?.watch('clientappio', appIo);
  }
  let ops: OpsServer | undefined;
  let closed = false;
  if (registry && o.metrics) {
    const cert = o.tls?.cert;
    superNodeMetrics(registry, {
      connected: () => session.connected,
      activeRuns: () => [...slots.values()].length,
      gpus: () => gpus.holders(),
      ...(cert && { certificateNotAfter: notAfterOf(cert) }),
    });
    ops = await startOpsServer({
      ...o.metrics,
      // Nothing runs yet but ClientAppIo: a listen failure closes it and stops the start.
      metrics: registry,
      checks: {
        // The node's store is its work folder (chunks, unpacked apps).
        store: () => accessSync(workDir, constants.W_OK),
        tls: () => {
          if (o.tls && !(o.tls.cert && o.tls.key && o.tls.ca))
            throw new Error('certificate, key or root CA missing');
        },
        listeners: () => {
          if (closed) throw new Error('the SuperNode is stopping');
        },
      },
      log,
    }).catch(async (e) => {
      await appIo?.close();
      throw e;
    });
  }

  const running = session.run((message) => instructions.handle(message));

  return {
    get nodeId() {
      return session.nodeId;
    },
    clientAppIoUrl: appIo?.url ?? '',
    opsUrl: ops?.url,
    ready: session.ready,
    failed,
    async close() {
      closed = true;
      closing.abort();
      const apps = slots.shutDownAll();
      await running;
      await session.deactivate();
      channel.close();
      // The apps were told to shut down; give them a moment, then make sure none outlives us.
      await reapClientApps(apps);
      await appIo?.close();
      await ops?.close();
    },
  };
}
