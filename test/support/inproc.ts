/**
 * A SuperLink started in this process (startSuperLink) with real mutual TLS on 127.0.0.1, and the
 * parties around it: sites with their own client certificates, an admin, and the ServerApp side
 * of a running run. For tests that need the SuperLink's internals beside real clients.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@connectrpc/connect';
import pino from 'pino';
import { openAppChannel } from '../../src/apps/app-channel.js';
import { ServerAppIo } from '../../src/gen/pollen/v1/appio_pb.js';
import { Control } from '../../src/gen/pollen/v1/control_pb.js';
import { Fleet } from '../../src/gen/pollen/v1/fleet_pb.js';
import { initCa, type LoadedCa, loadCa } from '../../src/pki/ca.js';
import { createSiteCertificate } from '../../src/pki/site.js';
import type { UserConfigValue } from '../../src/sdk/index.js';
import { type SuperLink, type SuperLinkOptions, startSuperLink } from '../../src/superlink/superlink.js';
import { type SuperNode, type SuperNodeOptions, startSuperNode } from '../../src/supernode/supernode.js';
import type { ChunkTransport } from '../../src/transport/chunk-transport.js';
import { openChannel, type RpcChannel } from '../../src/transport/rpc-client.js';
import { loadTlsMaterial, type TlsMaterial } from '../../src/transport/tls.js';
import { pushTrain, runningRun } from './runs.js';

export { tlsSuperLink } from './tls-superlink.js';

export interface Site {
  name: string;
  fleet: Client<typeof Fleet>;
  /** The channel's chunk transport (the bulk route). */
  chunks: ChunkTransport;
  channel: RpcChannel;
  nodeId: string;
}

export interface InProcessLink {
  superlink: SuperLink;
  /** A site with its own client certificate, activated (a prober: no SuperNode loop behind it). */
  site(name: string): Promise<Site>;
  /** The TLS material of client certificate `name` (e.g. for a real SuperNode). */
  tls(name: string): Promise<TlsMaterial>;
  /** The Control API as a project admin, and its chunk transport. */
  admin(): Promise<{ control: Client<typeof Control>; chunks: ChunkTransport }>;
  /** The admin's certificate files (`admin@inproc`), e.g. for a federations file the CLI reads. */
  adminCert(): Promise<{ certPath: string; keyPath: string; rootPath: string }>;
  /**
   * A running run (no ServerApp process: the test plays it), its ServerAppIo client and that
   * client's chunk transport.
   */
  run(): Promise<{ runId: string; app: Client<typeof ServerAppIo>; appChunks: ChunkTransport }>;
  /** An instruction of `runId` to `nodeId`, pulled by the node (it is then a participant); its id. */
  instruct(runId: string, nodeId: string): Promise<string>;
  close(): Promise<void>;
}

type Extra = Partial<
  Pick<SuperLinkOptions, 'limits' | 'collector' | 'chunkMemoryBytes' | 'oidc' | 'tokens' | 'python'>
>;

/** A SuperLink in this process with its three APIs on free ports of 127.0.0.1. */
export function startLocalSuperLink(
  o: Omit<SuperLinkOptions, 'fleet' | 'control' | 'serverAppIo'>,
): Promise<SuperLink> {
  const local = { host: '127.0.0.1', port: 0 };
  return startSuperLink({ ...o, fleet: local, control: local, serverAppIo: local });
}

export async function startInProcessLink(prefix: string, extra: Extra = {}): Promise<InProcessLink> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  await initCa({ name: 'inproc', dir: join(dir, 'ca'), keyType: 'ec-p256' });
  const ca: LoadedCa = await loadCa(join(dir, 'ca'));
  const server = await createSiteCertificate(ca, {
    name: 'superlink',
    type: 'server',
    outDir: join(dir, 'superlink-tls'),
    validityDays: 1,
    hosts: ['127.0.0.1', 'localhost'],
  });
  const superlink = await startLocalSuperLink({
    stateDir: join(dir, 'superlink'),
    tls: loadTlsMaterial({ cert: server.certPath, key: server.keyPath, ca: server.rootPath }),
    nodeAuth: false,
    log: pino({ level: 'silent' }),
    ...extra,
  });
  const channels: RpcChannel[] = [];
  let runs = 0;
  const tls = async (name: string): Promise<TlsMaterial> => {
    const s = await createSiteCertificate(ca, {
      name,
      type: 'client',
      outDir: join(dir, name),
      validityDays: 1,
    });
    return loadTlsMaterial({ cert: s.certPath, key: s.keyPath, ca: s.rootPath });
  };
  let admin: ReturnType<typeof createSiteCertificate> | undefined;
  const adminCert = () =>
    (admin ??= createSiteCertificate(ca, {
      name: 'admin@inproc',
      type: 'admin',
      outDir: join(dir, 'admin'),
      validityDays: 1,
      role: 'project_admin',
    }));
  return {
    superlink,
    tls,
    async site(name) {
      const channel = openChannel({ baseUrl: superlink.fleetUrl, tls: await tls(name) });
      channels.push(channel);
      const fleet = channel.client(Fleet);
      const { nodeId } = await fleet.activateNode({ heartbeatIntervalMs: 60_000, name });
      return { name, fleet, chunks: channel.chunks(fleet), channel, nodeId };
    },
    adminCert,
    async admin() {
      const a = await adminCert();
      const channel = openChannel({
        baseUrl: superlink.controlUrl,
        tls: loadTlsMaterial({ cert: a.certPath, key: a.keyPath, ca: a.rootPath }),
      });
      channels.push(channel);
      const control = channel.client(Control);
      return { control, chunks: channel.chunks(control) };
    },
    async run() {
      const runId = await runningRun(superlink.state, 'limits');
      const token = `run-token-${runs++}`;
      await superlink.state.setRunToken(runId, token);
      const channel = openAppChannel({ url: superlink.serverAppIoUrl, token, runId, appPath: '' });
      channels.push(channel);
      const app = channel.client(ServerAppIo);
      return { runId, app, appChunks: channel.chunks(app) };
    },
    async instruct(runId, nodeId) {
      const id = await pushTrain(superlink.link, runId, nodeId);
      await superlink.link.pullInstructions(nodeId, 16);
      return id;
    },
    async close() {
      for (const c of channels) c.close();
      await superlink.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Write a config file (`--config`, POLLEN_CONFIG) whose SuperLink connection `name` is `link`, as its admin. */
export async function writeFederationsFile(link: InProcessLink, path: string, name: string): Promise<void> {
  const admin = await link.adminCert();
  writeFileSync(
    path,
    [
      `[superlinks.${name}]`,
      `address = "${new URL(link.superlink.controlUrl).host}"`,
      `certificate = "${admin.certPath}"`,
      `private-key = "${admin.keyPath}"`,
      `root-certificate = "${admin.rootPath}"`,
    ].join('\n'),
  );
}

/**
 * Ready SuperNodes in this process on `link` (mutual TLS, a certificate each, `site-K`), one per
 * node config; `extra` goes to every one (e.g. an embedded `app`, `python`, `resources`).
 */
export async function startNodes(
  link: InProcessLink,
  dir: string,
  nodeConfigs: Record<string, UserConfigValue>[],
  extra: Partial<SuperNodeOptions> = {},
): Promise<SuperNode[]> {
  const nodes: SuperNode[] = [];
  for (const [k, nodeConfig] of nodeConfigs.entries())
    nodes.push(
      await startSuperNode({
        superlink: link.superlink.fleetUrl,
        tls: await link.tls(`site-${k}`),
        name: `site-${k}`,
        workDir: join(dir, `node-${k}`),
        nodeConfig,
        log: pino({ level: 'silent' }),
        pollIntervalMs: 100,
        ...extra,
      }),
    );
  await Promise.all(nodes.map((n) => n.ready));
  return nodes;
}
