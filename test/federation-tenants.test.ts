/**
 * Two federations on one real SuperLink process, with SuperNode processes of two organisations:
 * a run of the tiny app in `alpha` (served by Alpha Clinic's nodes, by the `O=` of their client
 * certificates) trains on Alpha's node only, while a run in `default` reaches both.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitRun } from '../src/apps/submit.js';
import { Control } from '../src/gen/pollen/v1/control_pb.js';
import { Federations } from '../src/gen/pollen/v1/federations_pb.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { openChannel, type RpcChannel } from '../src/transport/rpc-client.js';
import {
  type CertFiles,
  type Federation,
  startFederation,
  startSuperNode,
  stopAll,
  TINY_APP,
  tlsOf,
  waitFor,
} from './support/federation.js';

let fed: Federation;
let channel: RpcChannel;
const nodeIds: Record<string, string> = {};

/** A client certificate of organisation `org`. */
async function siteOf(name: string, org: string): Promise<CertFiles> {
  const r = await createSiteCertificate(fed.pki.ca, {
    name,
    type: 'client',
    org,
    outDir: join(fed.dir, 'certs', 'client', name),
    validityDays: 2,
  });
  return { name, type: 'client', cert: r.certPath, key: r.keyPath, ca: r.rootPath, serial: r.serial };
}

beforeAll(async () => {
  fed = await startFederation('pollen-tenants-');
  channel = openChannel({ baseUrl: fed.link.controlUrl, tls: tlsOf(fed.pki.admin) });
  await channel.client(Federations).createFederation({ name: 'alpha', nodeOrgs: ['Alpha Clinic'] });
  for (const [name, org, partitionId] of [
    ['alpha-site', 'Alpha Clinic', 0],
    ['beta-site', 'Beta Hospital', 1],
  ] as const) {
    const node = await startSuperNode({
      fleetUrl: fed.link.fleetUrl,
      cert: await siteOf(name, org),
      workDir: join(fed.dir, 'nodes', name),
      partitionId,
      nodeConfig: ['num-partitions=2'],
    });
    fed.nodes.push(node);
    nodeIds[name] = node.nodeId;
  }
}, 120_000);

afterAll(async () => {
  channel?.close();
  await fed?.close();
  await stopAll();
});

/** A run of the tiny app in `federation` (one round, `minNodes` nodes); its finished details. */
async function runIn(federation: string, minNodes: number) {
  const control = channel.client(Control);
  const { runId } = await submitRun({
    appDir: TINY_APP,
    control,
    chunks: channel.chunks(control),
    federation,
    runConfig: { 'num-rounds': 1, 'min-nodes': minNodes },
  });
  return waitFor(
    `run ${runId} to finish`,
    async () => {
      const d = await control.getRunDetails({ runId });
      return d.run?.status === 'finished' ? d : undefined;
    },
    90_000,
    500,
  );
}

describe('federations on a real SuperLink', () => {
  it("runs a federation's app only on the nodes serving it; `default` on every node", async () => {
    const alpha = await runIn('alpha', 1);
    expect(alpha.run).toMatchObject({ federation: 'alpha', subStatus: 'completed' });
    expect(alpha.rounds.map((r) => r.nodeIds)).toEqual([[nodeIds['alpha-site']]]);
    const all = await runIn('default', 2);
    expect(all.run?.subStatus).toBe('completed');
    expect(new Set(all.rounds[0]?.nodeIds)).toEqual(new Set([nodeIds['alpha-site'], nodeIds['beta-site']]));
    const listed = await channel.client(Control).listNodes({ federation: 'alpha' });
    expect(listed.nodes.map((n) => [n.name, n.federations])).toEqual([['alpha-site', ['alpha']]]);
  }, 180_000);
});
