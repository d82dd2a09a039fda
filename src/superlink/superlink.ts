/**
 * `pollen superlink`: the Fleet API (SuperNodes, mutual TLS), the Control API (admins, mutual
 * TLS) and ServerAppIo (the per-run ServerApp processes, loopback), over one LinkState, with the
 * chunk stores (app bundles, run chunks, artefacts) under one disk budget.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { AuditTrail } from '../audit/trail.js';
import { PollenError } from '../errors.js';
import type { OidcConfig, ServiceAccountAuth, TokenVerifier } from '../identity/identity.js';
import { type AccessPolicy, DEFAULT_ACCESS_POLICY } from '../identity/rights.js';
import { CallCounter } from '../observability/call-counter.js';
import { type OpsServer, startOpsServer } from '../observability/ops-server.js';
import { DiskChunkStore } from '../transport/chunks.js';
import { RequestVerifier } from '../transport/node-request-auth.js';
import type { ProxyProtocolOptions } from '../transport/proxy-listener.js';
import { type PeerRefusal, type RpcServer, startRpcServer } from '../transport/rpc-server.js';
import { type PeerIdentity, type TlsMaterial, withRootInChain } from '../transport/tls.js';
import { ArtefactStore } from './artefacts.js';
import { auditRoutes } from './audit-service.js';
import { type CollectorOptions, startCollector } from './collector.js';
import { auditInterceptor } from './control-audit.js';
import { type ControlOptions, controlBulkAuth, controlChunkStore, controlRoutes } from './control-service.js';
import { fleetApi, fleetChunkStore, fleetFastRoutes } from './fleet-service.js';
import { Link } from './link.js';
import { fleetBulkAuth } from './node-auth.js';
import { superLinkTelemetry } from './ops.js';
import { ByteBudget, DEFAULT_LIMITS, type Limits } from './quotas.js';
import { rateLimited } from './rate-limit.js';
import { DEFAULT_CHUNK_MEMORY, RelayChunks } from './relay-chunks.js';
import { RevocationList } from './revocation.js';
import { RunLauncher } from './run-launcher.js';
import {
  runChunkStore,
  runTokenBulkAuth,
  runTokenInterceptor,
  serverAppIoRoutes,
} from './serverappio-service.js';
import { type LeaseClock, type LinkState, openLinkState } from './state.js';

export interface Listen {
  host: string;
  port: number;
}

export interface SuperLinkOptions {
  stateDir: string;
  /** Store URL (default: SQLite in stateDir). */
  database?: string;
  fleet: Listen;
  control: Listen;
  serverAppIo: Listen;
  /** Our certificate, key and the project root; undefined runs insecure (development only). */
  tls?: TlsMaterial;
  /** Admit only SuperNodes whose OpenSSH key was registered (`pollen supernode register`). */
  nodeAuth: boolean;
  /** Project whose client certificates are admitted. */
  project?: string;
  /** CRL sources, refreshed while running. */
  crl?: { file?: string; url?: string; refreshMs?: number };
  /** How long a node-key session lasts (default 1 h); nodes renew before it ends. */
  nodeSessionTtlMs?: number;
  /** Bytes of run chunks held in memory before they go to files (default 1 GiB). */
  chunkMemoryBytes?: number;
  /** Per-node quotas, the disk budget and request rates (quotas.ts); each defaults to DEFAULT_LIMITS. */
  limits?: Partial<Limits>;
  /** The identity provider whose access tokens the Control API accepts (`pollen login`). */
  oidc?: OidcConfig;
  /** Checks those tokens (identity/token-verifier.ts); without it bearer tokens are OIDC_NOT_CONFIGURED. */
  tokens?: TokenVerifier;
  /** Service-account secrets (`pollen service-account create`). */
  serviceAccounts?: ServiceAccountAuth;
  /** Roles × rights; default DEFAULT_ACCESS_POLICY (docs/identity.md). */
  accessPolicy?: AccessPolicy;
  /** When unused chunks are collected (collector.ts; tests shorten it). */
  collector?: Partial<CollectorOptions>;
  /** How often the audit trail's head is signed (default 5 minutes; also on close). */
  auditCheckpointMs?: number;
  /**
   * The Fleet and Control APIs behind a TCP proxy (`--proxy-protocol-from`): its PROXY header
   * names the client address. The loopback ServerAppIo API never is.
   */
  proxyProtocol?: ProxyProtocolOptions;
  /** Where `/metrics`, `/healthz` and `/readyz` are served (ops-server.ts); undefined: nowhere. */
  metrics?: Listen;
  /** The interpreter of Python ServerApps (default: POLLEN_PYTHON, else `python3` on PATH). */
  python?: string;
  /** The store lease (store-lease.ts): its life, the grace after losing it, and its clock (tests). */
  lease?: { ttlMs?: number; lostGraceMs?: number; clock?: LeaseClock };
  log: Logger;
}

/** How long a SuperLink that lost its store lease stays up, not ready, before it stops. */
export const DEFAULT_LEASE_LOST_GRACE_MS = 5_000;

export interface SuperLink {
  readonly fleetUrl: string;
  readonly controlUrl: string;
  readonly serverAppIoUrl: string;
  /** The ops listener (`/metrics`, `/healthz`, `/readyz`); undefined when off. */
  readonly opsUrl: string | undefined;
  readonly state: LinkState;
  readonly link: Link;
  /** The audit trail of the Control port's calls (audit/trail.ts). */
  readonly audit: AuditTrail;
  /** Calls per path on the Fleet API (heartbeats, pulls, pushes: counted, not audited). */
  readonly fleetCalls: CallCounter;
  /**
   * Resolves once the store lease was lost (another SuperLink holds the store) and, after the
   * grace, this SuperLink has stopped without writing more: its process should exit with the
   * error's code, so its supervisor restarts it (a new start waits for the lease).
   */
  readonly leaseLost: Promise<PollenError>;
  /** Present this certificate from now on (a rotation): new connections get it, open ones stay. */
  useTls(tls: TlsMaterial): void;
  close(): Promise<void>;
}

const graceSleep = (ms: number): Promise<void> => delay(ms);

export async function startSuperLink(o: SuperLinkOptions): Promise<SuperLink> {
  const stateDir = resolve(o.stateDir);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const limits: Limits = { ...DEFAULT_LIMITS, ...o.limits };
  // One disk budget for every chunk file: app bundles, run chunks past the memory budget, artefacts.
  const disk = new ByteBudget(limits.chunkDiskBudgetBytes);
  const chunks = new DiskChunkStore(join(stateDir, 'chunks'), { maxChunkBytes: 4 << 20, budget: disk });
  let lostLease: (() => void) | undefined;
  const lost = new Promise<void>((r) => {
    lostLease = r;
  });
  const state = await openLinkState({
    url: o.database ?? join(stateDir, 'superlink.db'),
    ...(o.lease?.ttlMs !== undefined && { leaseTtlMs: o.lease.ttlMs }),
    ...(o.lease?.clock && { leaseClock: o.lease.clock }),
    onLeaseLost: (holder) => {
      o.log.error(
        { code: 'STORE_LEASE_LOST', holder },
        'another SuperLink took over the store lease: this SuperLink refuses every call and stops (two would diverge)',
      );
      lostLease?.();
    },
  });
  /** Every call is refused while the lease is not held: writes from a stale copy would diverge. */
  const leaseRefusal = (): PollenError | undefined => {
    const lease = state.leaseState();
    if (lease.state === 'held') return undefined;
    if (lease.state === 'lost')
      return new PollenError(
        'STORE_LEASE_LOST',
        'This SuperLink lost its store to another SuperLink and is stopping',
      );
    return new PollenError(
      'DATABASE_UNAVAILABLE',
      `This SuperLink's store lease ran out at ${new Date(lease.since).toISOString()} without renewal (the store is unreachable)`,
    );
  };
  // Checkpoints are signed with the SuperLink's TLS key; without TLS (development) the chain is
  // kept but not anchored.
  const auditSigner = o.tls && { component: 'superlink', key: o.tls.key, certificate: o.tls.cert };
  const audit = new AuditTrail({
    store: state.auditStore,
    ...(auditSigner && { signer: auditSigner }),
    ...(o.auditCheckpointMs !== undefined && { checkpointEveryMs: o.auditCheckpointMs }),
    log: o.log,
  });
  const fleetCalls = new CallCounter();
  const artefacts = new ArtefactStore({
    dir: join(stateDir, 'artefacts'),
    state,
    budget: disk,
    maxBytes: limits.artefactMaxBytes,
    runMaxBytes: limits.runArtefactBytes,
  });
  disk.add((await chunks.stats()).bytes + (await artefacts.chunks.stats()).bytes);
  if (disk.used > disk.limit)
    o.log.warn(
      { used: disk.used, budget: disk.limit },
      'the stored chunks (app bundles, artefacts) are already past the disk budget',
    );
  const relay = new RelayChunks({
    dir: join(stateDir, 'run-chunks'),
    memoryBytes: o.chunkMemoryBytes ?? DEFAULT_CHUNK_MEMORY,
    maxChunkBytes: 4 << 20,
    nodeQuotaBytes: limits.nodeChunkQuotaBytes,
    budget: disk,
  });
  const link = new Link({
    state,
    chunks,
    relay,
    artefacts,
    stateDir,
    log: o.log,
    nodeAuth: o.nodeAuth,
    limits,
  });
  const verifier = o.nodeAuth ? new RequestVerifier({ sessionTtlMs: o.nodeSessionTtlMs }) : undefined;
  const servers: RpcServer[] = [];
  const revocations =
    o.tls && o.crl
      ? new RevocationList({ ...o.crl, ca: `${o.tls.ca}\n${o.tls.cert}`, log: o.log })
      : undefined;
  // A revoked certificate completes the handshake (it is from our CA) and is told so on each call.
  const admitPeer = (peer: PeerIdentity): PollenError | undefined =>
    revocations?.isRevoked(peer.serial)
      ? new PollenError('CERT_REVOKED', `The certificate of ${peer.name} (serial ${peer.serial}) was revoked`)
      : undefined;
  // Metrics cost nothing when off: no observer is handed to the servers.
  const telemetry = o.metrics
    ? superLinkTelemetry({ link, disk, certificate: o.tls?.cert, revocations })
    : undefined;
  if (telemetry) link.events = telemetry.runs;
  const observe = (api: string) => telemetry && { observe: telemetry.rpc.observer(api) };
  const refusals = (api: string) => ({
    onRefused: (refusal: PeerRefusal): void => {
      const { event, reason, code, peer, address } = refusal;
      o.log.warn(
        { event, code, peer: peer?.name, type: peer?.type, serial: peer?.serial, address, reason },
        'connection refused',
      );
      telemetry?.rpc.refused(api, refusal);
    },
  });
  let ops: OpsServer | undefined;
  const fleetAuth = { state, verifier, project: o.project, insecure: !o.tls, log: o.log };
  let serverAppIoUrl = '';
  const launcher = new RunLauncher({
    link,
    appsDir: join(stateDir, 'apps'),
    serverAppIoUrl: () => serverAppIoUrl,
    ...(o.python !== undefined && { python: o.python }),
  });
  try {
    await revocations?.start();
    const appIo = await startRpcServer({
      log: o.log,
      name: 'the ServerAppIo API',
      addressOption: '--serverappio-address',
      host: o.serverAppIo.host,
      port: o.serverAppIo.port,
      routes: serverAppIoRoutes(link, launcher),
      interceptors: [runTokenInterceptor(link)],
      unavailable: leaseRefusal,
      bulk: {
        store: runChunkStore(link),
        authorize: runTokenBulkAuth(link),
        maxChunkBytes: link.chunkLimits.maxChunkBytes,
      },
      ...observe('serverappio'),
    });
    servers.push(appIo);
    serverAppIoUrl = appIo.url;
    const fleet = await startRpcServer({
      log: o.log,
      name: 'the Fleet API',
      addressOption: '--fleet-address',
      host: o.fleet.host,
      port: o.fleet.port,
      tls: o.tls ? { ...o.tls, requireClientCert: true } : undefined,
      // Authentication names the node, then the node's request rate is checked.
      ...fleetApi(link, fleetAuth),
      fast: fleetFastRoutes(link, fleetAuth),
      bulk: {
        store: fleetChunkStore(link),
        authorize: rateLimited(fleetBulkAuth(fleetAuth), link.rate),
        maxChunkBytes: link.chunkLimits.maxChunkBytes,
      },
      admitPeer,
      unavailable: leaseRefusal,
      ...refusals('fleet'),
      ...(o.proxyProtocol && { proxyProtocol: o.proxyProtocol }),
      onRequest: (path) => fleetCalls.count(path),
      ...observe('fleet'),
    });
    servers.push(fleet);
    const controlOptions: ControlOptions = {
      requireAdminCert: !!o.tls,
      project: o.project,
      policy: o.accessPolicy ?? DEFAULT_ACCESS_POLICY,
      ...(o.oidc && { oidc: o.oidc }),
      ...(o.tokens && { tokens: o.tokens }),
      serviceAccounts: o.serviceAccounts ?? state.serviceAccounts,
      onKeyUnregistered: (nodeId: string) => verifier?.revokeSessionsFor(nodeId),
      log: o.log,
      audit,
    };
    const control = await startRpcServer({
      log: o.log,
      name: 'the Control API',
      addressOption: '--control-address',
      host: o.control.host,
      port: o.control.port,
      // People with login tokens have no certificate: it is asked for, not required. They pin the
      // root by its fingerprint (`pollen login --root-fingerprint`): the Control API sends it.
      tls: o.tls
        ? { ...withRootInChain(o.tls), requireClientCert: false, requestClientCert: true }
        : undefined,
      routes: (router) => {
        controlRoutes(link, launcher, controlOptions)(router);
        auditRoutes(audit, controlOptions)(router);
      },
      interceptors: [auditInterceptor(audit)],
      bulk: {
        store: controlChunkStore(link),
        authorize: controlBulkAuth(controlOptions, link),
        maxChunkBytes: link.chunkLimits.maxChunkBytes,
      },
      admitPeer,
      unavailable: leaseRefusal,
      ...refusals('control'),
      ...observe('control'),
      ...(o.proxyProtocol && { proxyProtocol: o.proxyProtocol }),
    });
    servers.push(control);
    revocations?.onChange(() => {
      for (const s of servers) s.recheckPeers();
    });
    await launcher.recover();
    // Storage stays bounded: chunks nothing names go within minutes, also while runs are active.
    const collector = startCollector(link, o.log, o.collector);
    let closing = false;
    if (telemetry && o.metrics) {
      for (const [api, server] of [
        ['serverappio', appIo],
        ['fleet', fleet],
        ['control', control],
      ] as const)
        telemetry.rpc.watch(api, server);
      ops = await startOpsServer({
        ...o.metrics,
        metrics: telemetry.registry,
        checks: {
          store: () => state.ping(),
          lease: () => {
            const refusal = leaseRefusal();
            if (refusal) throw new Error(refusal.message);
          },
          tls: () => {
            if (!o.tls) return; // --insecure: nothing to load
            if (!o.tls.cert || !o.tls.key || !o.tls.ca)
              throw new Error('certificate, key or root CA missing');
          },
          listeners: () => {
            if (closing) throw new Error('the SuperLink is stopping');
          },
        },
        log: o.log,
      });
    }
    const superLink: SuperLink = {
      fleetUrl: fleet.url,
      controlUrl: control.url,
      serverAppIoUrl,
      opsUrl: ops?.url,
      state,
      link,
      audit,
      fleetCalls,
      leaseLost: lost.then(async () => {
        // Nothing more runs against the store; calls are answered STORE_LEASE_LOST meanwhile.
        collector.stop();
        link.close();
        await launcher.close();
        await (o.lease?.clock?.sleep ?? graceSleep)(
          o.lease?.lostGraceMs ?? DEFAULT_LEASE_LOST_GRACE_MS,
          new AbortController().signal,
        );
        await superLink.close();
        return new PollenError(
          'STORE_LEASE_LOST',
          `This SuperLink lost its store lease to another SuperLink (${state.lease.holder} no longer holds it) and stopped`,
        );
      }),
      useTls(tls) {
        fleet.useTls(tls);
        control.useTls(withRootInChain(tls));
        if (auditSigner) Object.assign(auditSigner, { key: tls.key, certificate: tls.cert });
      },
      close() {
        closed ??= stop();
        return closed;
      },
    };
    let closed: Promise<void> | undefined;
    const stop = async (): Promise<void> => {
      // Not ready from here on (probes see 503), while the APIs drain.
      closing = true;
      collector.stop();
      link.close();
      await launcher.close();
      revocations?.stop();
      await Promise.all(servers.map((s) => s.close()));
      await ops?.close();
      // The last checkpoint signs the head as it is at a graceful stop; without the lease the
      // head is another SuperLink's.
      await (state.leaseLost ? audit.abandon() : audit.close());
      await state.close();
    };
    return superLink;
  } catch (e) {
    await ops?.close();
    revocations?.stop();
    await Promise.all(servers.map((s) => s.close()));
    await audit.close();
    await state.close();
    throw e;
  }
}
