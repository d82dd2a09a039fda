/**
 * The SuperLink's Fleet, Control and ServerAppIo APIs in memory: a Link over SQLite (link-states.ts) on a
 * ManualClock, served through Connect's router transport with the pipeline and interceptors the
 * real servers run (rpc-server.ts `connectPipeline`, fleet-service.ts `fleetApi`, the Control
 * options superlink.ts gives). Only the TLS layer is replaced: each client names the peer identity
 * its certificate would carry, and a router interceptor puts it where the server's TLS socket
 * would (`peerContextKey`). Fleet clients send the headers a SuperNode sends (supernode/fleet-auth.ts).
 * No ServerApp process is started: a StartRun's run is marked running by a stand-in launcher.
 */
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  type Client,
  createClient,
  createRouterTransport,
  type Interceptor,
  type Transport,
} from '@connectrpc/connect';
import pino from 'pino';
import { beforeEach } from 'vitest';
import { AuditTrail, type AuditTrailOptions } from '../../src/audit/trail.js';
import { ServerAppIo } from '../../src/gen/pollen/v1/appio_pb.js';
import { Audit } from '../../src/gen/pollen/v1/audit_pb.js';
import { Control } from '../../src/gen/pollen/v1/control_pb.js';
import { Federations } from '../../src/gen/pollen/v1/federations_pb.js';
import { Fleet } from '../../src/gen/pollen/v1/fleet_pb.js';
import type { Message as WireMessage } from '../../src/gen/pollen/v1/records_pb.js';
import { DEFAULT_ACCESS_POLICY } from '../../src/identity/rights.js';
import { nodeIdFromPublicKey, sshPublicKeyLine } from '../../src/pki/openssh.js';
import type { CertType } from '../../src/pki/profiles.js';
import { Message } from '../../src/sdk/message.js';
import { RecordDict } from '../../src/sdk/records.js';
import { auditRoutes } from '../../src/superlink/audit-service.js';
import { auditInterceptor } from '../../src/superlink/control-audit.js';
import { type ControlOptions, controlBulkAuth, controlRoutes } from '../../src/superlink/control-service.js';
import { fleetApi } from '../../src/superlink/fleet-service.js';
import type { Link } from '../../src/superlink/link.js';
import type { NodeAuthOptions } from '../../src/superlink/node-auth.js';
import { nodeIdFromIdentity } from '../../src/superlink/node-identity.js';
import { RunLauncher } from '../../src/superlink/run-launcher.js';
import { runTokenInterceptor, serverAppIoRoutes } from '../../src/superlink/serverappio-service.js';
import type { LinkState } from '../../src/superlink/state.js';
import { fleetClientAuth, type SessionHolder } from '../../src/supernode/fleet-auth.js';
import type { BulkRequest } from '../../src/transport/bulk-server.js';
import { peerContextKey } from '../../src/transport/context.js';
import { RequestSigner, RequestVerifier } from '../../src/transport/node-request-auth.js';
import { connectPipeline } from '../../src/transport/rpc-server.js';
import type { PeerIdentity } from '../../src/transport/tls.js';
import { messageToWire } from '../../src/transport/wire.js';
import { storeBackends } from './backends.js';
import { setHeaders } from './fleet-client.js';
import { linkStates, T0, type TestLinkOptions } from './link-states.js';
import { ManualClock } from './manual-clock.js';
import { runningRun } from './runs.js';

/** The project of the SuperLink and of every peer unless a test names another. */
export const PROJECT = 'fedtest';

export interface MemoryLinkOptions extends Omit<TestLinkOptions, 'time'> {
  /** Fleet: no certificates, nodes name themselves (`--insecure`); Control: every caller is admin. */
  insecure?: boolean;
  /** Node-key sessions' lifetime (node-key mode). */
  sessionTtlMs?: number;
  /** Control API options: bearer sources, policy, OIDC config. */
  control?: Partial<Pick<ControlOptions, 'tokens' | 'serviceAccounts' | 'policy' | 'oidc'>>;
  /** The audit trail's signer, refusal limits (default: no signer, no timer). */
  audit?: Partial<Pick<AuditTrailOptions, 'signer' | 'refusals' | 'checkpointEveryEntries'>>;
}

export interface FleetCaller {
  /** The peer its certificate names (default: none). */
  peer?: PeerIdentity;
  /** Node-key mode: signs ActivateNode, MACs the rest under `holder`'s session. */
  signer?: RequestSigner;
  holder?: SessionHolder;
  /** Insecure mode: the `pollen-node-name` it sends. */
  insecureName?: string;
  /** Headers sent verbatim on every call (a captured request). */
  headers?: Record<string, string>;
  /** Send JSON (the Connect protocol's JSON format) instead of binary protobuf. */
  json?: boolean;
}

export interface MemoryNode {
  fleet: Client<typeof Fleet>;
  nodeId: string;
  peer: PeerIdentity;
}

/** A launcher that starts no ServerApp: a started run goes straight to running. */
export class StandInLauncher extends RunLauncher {
  readonly started: string[] = [];
  readonly #state: LinkState;

  constructor(link: Link, appsDir: string) {
    super({ link, appsDir, serverAppIoUrl: () => '' });
    this.#state = link.state;
  }

  override async start(runId: string): Promise<void> {
    this.started.push(runId);
    await this.#state.transitionRun(runId, 'starting');
    await this.#state.transitionRun(runId, 'running');
  }
}

export interface MemoryLink {
  link: Link;
  state: LinkState;
  clock: ManualClock;
  /** Node-key mode's verifier (sessions). */
  verifier?: RequestVerifier;
  launcher: StandInLauncher;
  /** The SuperLink's log lines (info and up). */
  logs: Record<string, unknown>[];
  /** The audit trail of the Control port. */
  audit: AuditTrail;
  /** An Audit API client presenting `peer`, sending `headers`. */
  auditClient(peer: PeerIdentity | undefined, headers?: Record<string, string>): Client<typeof Audit>;
  /** A certificate's identity: `client` of the project unless told otherwise. */
  peer(name: string, o?: { type?: CertType; project?: string; org?: string; role?: string }): PeerIdentity;
  /** A Fleet client as `caller`. */
  fleet(caller: FleetCaller): Client<typeof Fleet>;
  /** A site's Fleet client (certificate `name`, of organisation `org` if given), activated. */
  node(name: string, o?: { org?: string }): Promise<MemoryNode>;
  /** A Control client presenting `peer` (none: no certificate), sending `headers` (an `authorization`). */
  control(peer: PeerIdentity | undefined, headers?: Record<string, string>): Client<typeof Control>;
  /** A Control client as an admin of the project. */
  admin(name?: string): Client<typeof Control>;
  /** A Federations client (same port and identities as Control) presenting `peer`, sending `headers`. */
  federations(peer: PeerIdentity | undefined, headers?: Record<string, string>): Client<typeof Federations>;
  /** The Control port's bulk chunk route's check of one request (it throws a refusal). */
  controlBulk(req: BulkRequest): Promise<void>;
  /** A new node key (ECDSA P-256): its signer, public key line and node id. */
  nodeKey(): { signer: RequestSigner; publicKey: string; nodeId: string };
  /** A running run (no ServerApp behind it); its id. */
  runningRun(): Promise<string>;
  /** A ServerAppIo client of run `runId` holding the run's token (made now), as its ServerApp process. */
  serverApp(runId: string): Promise<Client<typeof ServerAppIo>>;
  /** A `train` instruction of `runId` to `nodeId`, stamped with the clock, queued; its id. */
  instruct(runId: string, nodeId: string): Promise<string>;
}

/** Sets the TLS peer, as the server does from the connection's client certificate. */
const asPeer =
  (peer: PeerIdentity | undefined): Interceptor =>
  (next) =>
  (req) => {
    if (peer) req.contextValues.set(peerContextKey, peer);
    return next(req);
  };

/**
 * In-memory SuperLinks for the tests of one file, each on a fresh SQLite store and a ManualClock
 * starting at T0 (a new one before each test); closed after each test.
 */
export function memoryLinks(name: string) {
  const [[backend, makeUrl]] = storeBackends(name);
  let clock = new ManualClock({ start: T0, settleMs: 50 });
  const states = linkStates(backend, makeUrl, { now: () => clock.now() });
  beforeEach(() => {
    clock = new ManualClock({ start: T0, settleMs: 50 });
  });

  return async function start(o: MemoryLinkOptions = {}): Promise<MemoryLink> {
    const c = clock;
    const state = await states.state();
    const logs: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s)) });
    const { link, dir } = states.link(state, { ...o, log, time: { now: c.now, sleep: c.sleep } });
    const verifier = o.nodeAuth
      ? new RequestVerifier({ sessionTtlMs: o.sessionTtlMs, now: c.now })
      : undefined;
    const insecure = o.insecure ?? false;
    const auth: NodeAuthOptions = { state, verifier, project: PROJECT, insecure, log };
    const fleet = connectPipeline({ ...fleetApi(link, auth), log });
    const launcher = new StandInLauncher(link, join(dir, 'apps'));
    const audit = new AuditTrail({
      store: state.auditStore,
      checkpointEveryMs: 0,
      now: () => new Date(c.now()),
      ...o.audit,
    });
    const controlOptions: ControlOptions = {
      audit,
      requireAdminCert: !insecure,
      project: PROJECT,
      policy: DEFAULT_ACCESS_POLICY,
      serviceAccounts: state.serviceAccounts,
      ...o.control,
      onKeyUnregistered: (nodeId) => verifier?.revokeSessionsFor(nodeId),
    };
    const control = connectPipeline({
      routes: (router) => {
        controlRoutes(link, launcher, { ...controlOptions, log })(router);
        auditRoutes(audit, { ...controlOptions, log })(router);
      },
      interceptors: [auditInterceptor(audit)],
      log,
    });
    const appIo = connectPipeline({
      routes: serverAppIoRoutes(link, launcher),
      interceptors: [runTokenInterceptor(link)],
      log,
    });
    const transport = (
      pipeline: typeof fleet,
      peer: PeerIdentity | undefined,
      client: Interceptor[],
      json = false,
    ): Transport =>
      createRouterTransport(pipeline.routes, {
        router: { ...pipeline.options, interceptors: [asPeer(peer), ...pipeline.options.interceptors] },
        transport: { interceptors: client, useBinaryFormat: !json },
      });

    const peer: MemoryLink['peer'] = (peerName, p = {}) => {
      const id = { project: p.project ?? PROJECT, type: p.type ?? 'client', name: peerName };
      const fingerprint = createHash('sha256').update(`pollen://${id.project}/${id.type}/${id.name}`);
      return {
        ...id,
        serial: randomBytes(8).toString('hex').toUpperCase(),
        fingerprint: `sha256:${fingerprint.digest('hex')}`,
        ...(p.org !== undefined && { org: p.org }),
        ...(p.role !== undefined && { role: p.role }),
      };
    };
    const fleetClient: MemoryLink['fleet'] = (caller) => {
      const interceptors: Interceptor[] = [];
      if (caller.signer || caller.insecureName)
        interceptors.push(
          fleetClientAuth({
            signer: caller.signer,
            holder: caller.holder ?? {},
            insecureName: caller.insecureName,
          }),
        );
      if (caller.headers) interceptors.push(setHeaders(caller.headers));
      return createClient(Fleet, transport(fleet, caller.peer, interceptors, caller.json));
    };
    const admin = (adminName = 'admin@test') =>
      createClient(Control, transport(control, peer(adminName, { type: 'admin' }), []));
    return {
      link,
      state,
      clock: c,
      verifier,
      launcher,
      logs,
      audit,
      controlBulk: controlBulkAuth({ ...controlOptions, log }, link),
      auditClient: (p, headers) =>
        createClient(Audit, transport(control, p, headers ? [setHeaders(headers)] : [])),
      peer,
      fleet: fleetClient,
      async node(nodeName, o = {}) {
        const p = peer(nodeName, o);
        const client = fleetClient({ peer: p });
        const { nodeId } = await client.activateNode({ heartbeatIntervalMs: 10_000, name: nodeName });
        if (nodeId !== nodeIdFromIdentity(p)) throw new Error(`node ${nodeName} got id ${nodeId}`);
        return { fleet: client, nodeId, peer: p };
      },
      control: (p, headers) =>
        createClient(Control, transport(control, p, headers ? [setHeaders(headers)] : [])),
      admin,
      federations: (p, headers) =>
        createClient(Federations, transport(control, p, headers ? [setHeaders(headers)] : [])),
      nodeKey() {
        const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        return {
          signer: new RequestSigner(privateKey, { now: c.now }),
          publicKey: sshPublicKeyLine(publicKey),
          nodeId: nodeIdFromPublicKey(publicKey),
        };
      },
      runningRun: () => runningRun(state, 'memory'),
      async serverApp(runId) {
        const token = randomBytes(16).toString('hex');
        await state.setRunToken(runId, token);
        const headers = setHeaders({ authorization: `Bearer ${token}`, 'pollen-run-id': runId });
        return createClient(ServerAppIo, transport(appIo, undefined, [headers]));
      },
      async instruct(runId, nodeId) {
        const [id] = await link.pushInstructions(runId, [instruction(runId, nodeId, c.now())]);
        return id!;
      },
    };
  };
}

/** A `train` instruction of `runId` for `nodeId`, created at `now`, that lives a minute. */
function instruction(runId: string, nodeId: string, now: number): WireMessage {
  const { wire } = messageToWire(
    Message.create({
      content: new RecordDict(),
      dstNodeId: nodeId,
      messageType: 'train',
      runId,
      ttlSeconds: 60,
    }),
  );
  wire.metadata!.createdAt = BigInt(now);
  return wire;
}
