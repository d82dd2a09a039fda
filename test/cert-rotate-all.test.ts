/**
 * Everything rotated at once while a run is in progress and sites enroll: the intermediate CA,
 * the token key, the Certificate Service's certificate and the SuperLink's (renewed through the
 * service, from an enrolled server kit). The run completes with both SuperNodes, which never
 * restart nor reconnect; tokens of the old and the new key enroll; new certificates come from
 * the new intermediate while those of the old one keep verifying.
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodeTokenHeader } from '../src/enrollment/token.js';
import { Fleet } from '../src/gen/pollen/v1/fleet_pb.js';
import { chainsToRoot, parseCertificates } from '../src/pki/verify.js';
import { openChannel } from '../src/transport/rpc-client.js';
import { loadTlsMaterial } from '../src/transport/tls.js';
import { type LiveCertService, opensslCsr, startLiveCertService } from './support/cert-service.js';
import { type CliResult, ensureBuilt, pollenInProcess, tempDir } from './support/cli.js';
import {
  type Federation,
  finishedRun,
  makePki,
  runDetails,
  startFederation,
  startRun,
  stopAll,
  waitFor,
} from './support/federation.js';

const t = tempDir('pollen-rotate-all-');
const KEY = 'pollen_rotate_all_key_0123456789abcdefghijklmnopqr';
const POLICY = `metadata: { project: "rotate-all", version: "1" }
token: { validity: 1d, max_uses: 1 }
site:
  name_pattern: "*"
  host_patterns: ["localhost", "127.0.0.0/8"]
approval:
  method: policy
  rules:
    - { name: "everyone", match: {}, action: approve }
`;
let cs: LiveCertService;
let fed: Federation;
let kit: string;
/** Enrollments go on in the background while this is true. */
let rotating = false;
let enrolling: Promise<void> | undefined;

function ok(r: CliResult): Record<string, any> {
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r.json();
}
const cli = (args: string[]) => pollenInProcess([...args, '--json'], { cwd: t.dir });
const root = () => new X509Certificate(readFileSync(join(fed.pki.caDir, 'rootCA.pem')));

/**
 * The certificate chain a TLS server presents to a new connection of site-1, verified as a site
 * does: against the root CA only.
 */
function served(port: number): Promise<X509Certificate[]> {
  return new Promise((resolve, reject) => {
    const site = fed.nodes[0]!.options.cert;
    const tls = { ca: root().toString(), cert: readFileSync(site.cert), key: readFileSync(site.key) };
    const socket = connect({ host: '127.0.0.1', port, ...tls }, () => {
      const chain: X509Certificate[] = [];
      for (let c = socket.getPeerCertificate(true); c?.raw; c = c.issuerCertificate) {
        chain.push(new X509Certificate(c.raw));
        if (c.issuerCertificate === c) break;
      }
      socket.destroy();
      resolve(chain);
    });
    socket.once('error', reject);
  });
}

/** The intermediate CA that issued `leafPem`, found in the project's chain (throws if none). */
function issuerOf(leafPem: string): string {
  const chain = parseCertificates(readFileSync(join(fed.pki.caDir, 'chain.pem'), 'utf8'));
  const r = chainsToRoot(new X509Certificate(leafPem), chain, root());
  if (!r.ok) throw new Error(r.reason);
  return r.path[1]!.fingerprint256;
}
/** The names of the nodes the SuperLink activated, from its log, in name order. */
const activations = () =>
  fed.link
    .stderr()
    .split('\n')
    .filter((l) => l.includes('"msg":"node activated"'))
    .map((l) => JSON.parse(l).name as string)
    .sort();
const intermediate = () =>
  new X509Certificate(readFileSync(join(fed.pki.caDir, 'intermediateCA.pem'))).fingerprint256;

beforeAll(async () => {
  ensureBuilt('cli/main.js');
  const pki = await makePki(join(t.dir, 'pki'), 'rotate-all');
  // The root key lives offline; it is brought back only for the intermediate's rotation.
  mkdirSync(join(t.dir, 'offline'));
  renameSync(join(pki.caDir, 'rootCA.key'), join(t.dir, 'offline', 'rootCA.key'));
  cs = await startLiveCertService(join(t.dir, 'cs'), {
    name: 'rotate-all',
    caDir: pki.caDir,
    apiKey: KEY,
    policy: POLICY,
    hostnames: ['localhost', '127.0.0.1'],
    reloadCheckMs: 20,
  });
  // The SuperLink runs from a server kit enrolled through the service, as in production.
  const { token } = ok(
    await cli([
      ...['token', 'generate', '-s', 'superlink', '--server', '--host', '127.0.0.1'],
      ...['-c', pki.caDir, '-p', cs.policyFile],
    ]),
  );
  kit = join(t.dir, 'superlink-kit');
  ok(
    await cli([
      'package',
      ...['-n', 'superlink', '-t', 'server', '-e', 'grpcs://127.0.0.1:9092:9093', '-o', kit],
      ...['--cert-service', `https://127.0.0.1:${cs.svc.port}`, '--token', token],
    ]),
  );
  ok(await cli(['start', kit, '--enroll-only']));
  fed = await startFederation('', {
    pki,
    dir: join(t.dir, 'fed'),
    kit,
    env: { POLLEN_TLS_RELOAD_CHECK_MS: '50' },
  });
  await Promise.all([fed.addNode('site-1', 0), fed.addNode('site-2', 1)]);
}, 60_000);
afterAll(async () => {
  rotating = false;
  await enrolling;
  await stopAll();
  await cs?.close();
  t.cleanup();
});

it('rotates the intermediate, the token key, the service and SuperLink certificates during a run and enrollments', async () => {
  const nodes = fed.nodes.map((n) => ({ pid: n.pid, nodeId: n.nodeId }));
  const oldIntermediate = intermediate();
  const oldLink = (await served(fed.link.ports.fleet))[0]!;
  const oldService = (await served(cs.svc.port))[0]!;
  const oldKeyToken = cs.token('site-old-key');
  const oldKid = decodeTokenHeader(oldKeyToken).kid;

  // A run of three rounds whose ClientApps hold from round 2 until the file `go` exists.
  const go = join(t.dir, 'go');
  const runId = await startRun(fed, ['num-rounds=3', 'hold-round=2', `hold-file=${go}`, 'round-timeout=60']);
  await waitFor('round 1 to be reported', async () => (await runDetails(fed, runId)).rounds.length === 1);

  // Sites keep enrolling (tokens of the old key) through all of the rotations.
  rotating = true;
  const busy: { name: string; status: number; certificate?: string; error?: string }[] = [];
  enrolling = (async () => {
    for (let i = 0; rotating; i++) {
      const name = `busy-${i}`;
      const r = await cs.enroll(name).catch((e): { status: number; json: Record<string, any> } => ({
        status: 0,
        json: { error: String(e) },
      }));
      busy.push(
        r.status === 200
          ? { name, status: r.status, certificate: r.json.certificate }
          : { name, status: r.status, error: JSON.stringify(r.json) },
      );
    }
  })();
  await waitFor('a first enrollment', () => busy.length > 0, 10_000, 20);

  const inter = ok(
    await cli([
      ...['cert', 'rotate', 'intermediate', '-c', fed.pki.caDir],
      ...['--root-key', join(t.dir, 'offline', 'rootCA.key')],
    ]),
  );
  const tokenKey = ok(await cli(['cert', 'rotate', 'token-key', '-c', fed.pki.caDir]));
  const service = ok(
    await cli(['cert', 'rotate', 'cert-service', '-c', fed.pki.caDir, '-w', join(t.dir, 'cs', 'ws')]),
  );
  expect(tokenKey.previousKid).toBe(oldKid);
  expect(inter.previousFingerprint).not.toBe(inter.fingerprint);
  const newIntermediate = intermediate();
  expect(newIntermediate).not.toBe(oldIntermediate);

  // The service takes all three up by itself: its new certificate (from the new intermediate,
  // with a chain a client trusting only the root verifies), and tokens under the new kid.
  await waitFor(
    'the Certificate Service to serve its new certificate',
    async () => (await served(cs.svc.port))[0]!.serialNumber.toLowerCase() === service.serial,
    10_000,
    20,
  );
  expect(issuerOf((await served(cs.svc.port))[0]!.toString())).toBe(newIntermediate);
  const newKeyToken = await waitFor(
    'tokens under the new key',
    async () => {
      const r = await cs.post('/v1/tokens', { subjects: ['site-new-key'] }, true);
      const token = r.json.tokens[0].token as string;
      return decodeTokenHeader(token).kid === tokenKey.kid && token;
    },
    10_000,
    20,
  );

  // The SuperLink's certificate, renewed through the service: from the new intermediate.
  const link = ok(await cli(['cert', 'rotate', 'superlink', kit]));
  const linkCert = readFileSync(join(kit, 'startup', 'superlink.crt'), 'utf8');
  expect(new X509Certificate(linkCert).serialNumber.toLowerCase()).toBe(link.serial.toLowerCase());
  expect(issuerOf(linkCert)).toBe(newIntermediate);
  await waitFor(
    'the SuperLink to serve its new certificate',
    async () =>
      (await served(fed.link.ports.fleet))[0]!.fingerprint256 ===
      new X509Certificate(linkCert).fingerprint256,
    10_000,
    20,
  );
  await waitFor(
    'the SuperLink to log it',
    () => fed.link.stderr().includes('took up a rotated TLS certificate'),
    10_000,
    20,
  );

  // Enrollments with a token of the old key and one of the new: certificates of the new intermediate.
  const newKeyCsr = opensslCsr(t.dir, 'site-new-key');
  const oldKeySite = await cs.post('/v1/enroll', {
    token: oldKeyToken,
    csr: opensslCsr(t.dir, 'site-old-key').csr,
  });
  const newKeySite = await cs.post('/v1/enroll', { token: newKeyToken, csr: newKeyCsr.csr });
  expect([oldKeySite.status, newKeySite.status]).toEqual([200, 200]);
  expect(issuerOf(oldKeySite.json.certificate)).toBe(newIntermediate);
  expect(issuerOf(newKeySite.json.certificate)).toBe(newIntermediate);
  rotating = false;
  await enrolling;
  expect(busy.filter((b) => b.status !== 200)).toEqual([]);
  // The first of them was issued before the rotation, the last after it.
  expect(issuerOf(busy[0]!.certificate!)).toBe(oldIntermediate);
  expect(issuerOf(busy.at(-1)!.certificate!)).toBe(newIntermediate);

  // The run goes on and completes: every round with both nodes, which never restarted.
  writeFileSync(go, '');
  const done = await finishedRun(fed, runId);
  expect(done.run).toMatchObject({ status: 'finished', subStatus: 'completed' });
  expect(done.rounds.map((r) => r.nodes.sort())).toEqual(Array(3).fill(nodes.map((n) => n.nodeId).sort()));
  for (const [i, n] of fed.nodes.entries()) {
    expect(n.alive()).toBe(true);
    expect(n.pid).toBe(nodes[i]!.pid);
  }
  // Each node activated once, when it started: no reconnection, let alone a new enrollment.
  expect(activations()).toEqual(['site-1', 'site-2']);
  expect((await fed.nodeList()).map((n) => n.nodeId).sort()).toEqual(nodes.map((n) => n.nodeId).sort());

  // What the old intermediate signed still verifies: the nodes' certificates, the SuperLink's
  // and the service's former ones; and the SuperLink accepts a site of the new intermediate.
  for (const c of [...fed.nodes.map((n) => readFileSync(n.options.cert.cert, 'utf8')), oldLink, oldService])
    expect(issuerOf(c.toString())).toBe(oldIntermediate);
  const certPath = join(t.dir, 'site-new-key.crt');
  writeFileSync(certPath, `${newKeySite.json.certificate.trim()}\n${newKeySite.json.chain}`);
  const channel = openChannel({
    baseUrl: fed.link.fleetUrl,
    tls: loadTlsMaterial({ cert: certPath, key: newKeyCsr.keyPath, ca: join(fed.pki.caDir, 'rootCA.pem') }),
  });
  try {
    const { nodeId } = await channel.client(Fleet).activateNode({ heartbeatIntervalMs: 60_000, name: '' });
    expect(nodeId).toBeTruthy();
  } finally {
    channel.close();
  }
});
