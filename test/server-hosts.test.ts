/**
 * Server identities through the Certificate Service: a server or relay token names the DNS names
 * and IP addresses its certificate will carry (`token generate --host`), the policy limits them
 * (site.host_patterns), the service checks them again and puts them in the subjectAltName. A
 * SuperLink started from such an enrolled kit is reached by a SuperNode by those names, over real
 * TLS on 127.0.0.1.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet } from '../src/gen/pollen/v1/fleet_pb.js';
import { loadCa } from '../src/pki/ca.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { openChannel } from '../src/transport/rpc-client.js';
import { loadTlsMaterial } from '../src/transport/tls.js';
import { type LiveCertService, opensslCsr, startLiveCertService } from './support/cert-service.js';
import { type CliResult, ensureBuilt, pollenInProcess, tempDir } from './support/cli.js';
import { startSuperLink, startSuperNode, stopAll } from './support/federation.js';

const t = tempDir('pollen-hosts-');
const KEY = 'pollen_test_admin_key_server_hosts_0123456789abcdef';
const POLICY = `metadata: { project: "hosts", version: "1" }
token: { validity: 1d, max_uses: 1 }
site:
  name_pattern: "*"
  host_patterns: ["localhost", "127.0.0.0/8", "*.example.test"]
approval:
  method: policy
  rules:
    - { name: "held", match: { site_name_pattern: "held-*" }, action: pending }
    - { name: "everyone", match: {}, action: approve }
`;
let cs: LiveCertService;
let url: string;

const cli = (args: string[]) => pollenInProcess(args, { cwd: t.dir });
/** `token generate -s SUBJECT … --json`. */
const generate = (subject: string, ...args: string[]) =>
  cli(['token', 'generate', '-s', subject, ...args, '--json']);
/** `token generate` signed with the CA folder's token key under the service's policy. */
const local = () => ['-c', cs.caDir, '-p', cs.policyFile];
const remote = () => ['--cert-service', url, '--api-key', KEY, '--ca-cert', join(cs.caDir, 'rootCA.pem')];

function ok(r: CliResult): Record<string, any> {
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r.json();
}
function failure(r: CliResult, code: string, exit: number): { message: string; hint: string } {
  const doc = r.json<{ error: { code: string; message: string; hint: string } }>();
  expect(doc.error.code, r.stdout).toBe(code);
  expect(r.code, r.stdout + r.stderr).toBe(exit);
  return doc.error;
}

/** `pollen package` of server kit NAME into KIT that enrolls through the service. */
const serverKit = (name: string, kit: string, ...more: string[]) =>
  cli([
    'package',
    '-n',
    name,
    '-t',
    'server',
    '-e',
    'grpcs://127.0.0.1:9092:9093',
    '--cert-service',
    url,
    '-o',
    kit,
    ...more,
    '--json',
  ]);

beforeAll(async () => {
  ensureBuilt('cli/main.js');
  cs = await startLiveCertService(t.dir, {
    name: 'Hosts',
    keyType: 'ec-p256',
    apiKey: KEY,
    policy: POLICY,
    hostnames: ['127.0.0.1'],
  });
  url = `https://127.0.0.1:${cs.svc.port}`;
}, 60_000);
afterAll(async () => {
  await stopAll();
  await cs?.close();
  t.cleanup();
});

describe('token generate --host', () => {
  it('puts the hosts in server and relay tokens, locally and through the service, as the policy allows', async () => {
    const server = ok(
      await generate('link', '--server', '--host', 'LocalHost', '--host', '127.0.0.1', ...local()),
    );
    expect(server.hosts).toEqual(['localhost', '127.0.0.1']);
    const info = ok(await cli(['token', 'info', '-t', server.token, '-c', cs.caDir, '--json']));
    expect(info).toMatchObject({ hosts: ['localhost', '127.0.0.1'], signature: 'verified' });
    const relay = ok(await generate('relay-1', '--relay', '--host', 'relay.example.test', ...remote()));
    expect(ok(await cli(['token', 'info', '-t', relay.token, '--json'])).hosts).toEqual([
      'relay.example.test',
    ]);
  });

  it('refuses hosts the policy does not allow (locally and at the service), and hosts on client tokens', async () => {
    const here = await generate('link', '--server', '--host', 'evil.test', ...local());
    expect(failure(here, 'POLICY_HOST', 9).message).toMatch(
      /^Host evil\.test is not allowed by the policy's site\.host_patterns/,
    );
    const there = await generate('link', '--server', '--host', '10.0.0.5', ...remote());
    expect(failure(there, 'POLICY_HOST', 9).message).toContain('10.0.0.5');
    const client = await generate('site-1', '--host', 'localhost', ...local());
    expect(failure(client, 'INVALID_ARGUMENT', 2).hint).toContain('--server');
    const bad = await generate('link', '--server', '--host', 'not a host', ...local());
    expect(failure(bad, 'INVALID_ARGUMENT', 2).message).toContain("'not a host'");
  });

  it('policy explain and policy check show the host check', async () => {
    const explain = (host: string, ...more: string[]) =>
      cli([
        'policy',
        'explain',
        cs.policyFile,
        '--site',
        'link',
        '--type',
        'server',
        '--host',
        host,
        '--ip',
        '127.0.0.1',
        ...more,
      ]);
    const refused = ok(await explain('evil.test', '--json'));
    expect(refused.decision).toMatchObject({
      action: 'reject',
      reason: expect.stringContaining('"evil.test"'),
    });
    expect(refused.hostCheck).toMatchObject({ refused: ['evil.test'] });
    const text = await explain('a.example.test');
    expect(text.stdout).toContain('allow host "a.example.test"');
    expect(text.stdout).toMatch(/decision: approve/);
    expect((await cli(['policy', 'check', cs.policyFile])).stdout).toContain(
      'server hosts    localhost, 127.0.0.0/8, *.example.test',
    );
  });
});

describe('an enrolled server', () => {
  it('gets a certificate for its token hosts also when an admin approves it later', async () => {
    const { token } = ok(await generate('held-link', '--server', '--host', 'held.example.test', ...local()));
    const held = await cs.post('/v1/enroll', { token, csr: opensslCsr(t.dir, 'held-link').csr });
    expect(held.status).toBe(202);
    ok(await cli(['enrollment', 'approve', 'held-link', ...remote(), '--json']));
    const db = new Database(join(t.dir, 'ws', 'cert-service.db'), { readonly: true });
    const row = db.prepare("SELECT pem FROM certificates WHERE name = 'held-link'").get() as { pem: string };
    db.close();
    expect(new X509Certificate(row.pem).subjectAltName).toContain('DNS:held.example.test');
  });

  it('does not enroll a kit made with --host on a token that lacks the host', async () => {
    const { token } = ok(await generate('link-2', '--server', '--host', '127.0.0.1', ...local()));
    const kit = join(t.dir, 'link-2-kit');
    const made = ok(await serverKit('link-2', kit, '--host', 'localhost'));
    expect(made.warnings).toContainEqual(
      expect.stringContaining('names localhost only if the enrollment token does'),
    );
    const r = await cli(['start', kit, '--enroll-only', '--token', token, '--json']);
    const e = failure(r, 'TOKEN_SUBJECT_MISMATCH', 3);
    expect(e.message).toContain('does not name localhost');
    expect(e.hint).toContain('--server --host localhost');
  });

  it('is reachable by a SuperNode by the names of its token: localhost and 127.0.0.1, over real TLS', async () => {
    const { token } = ok(
      await generate('superlink', '--server', '--host', 'localhost', '--host', '127.0.0.1', ...local()),
    );
    const kit = join(t.dir, 'superlink-kit');
    const pkg = (more: string[]) => serverKit('superlink', kit, '--token', token, ...more);
    // The kit says where the server is reached; the token must name it, or the certificate would not.
    const wrong = failure(await pkg(['--host', 'elsewhere.example.test']), 'INVALID_ARGUMENT', 2);
    expect(wrong.hint).toContain('--host localhost --host 127.0.0.1 --host elsewhere.example.test');
    expect(ok(await pkg(['--host', 'localhost'])).hosts).toEqual(['localhost']);
    const started = ok(await cli(['start', kit, '--enroll-only', '--json']));
    expect(started.certificate.hosts).toEqual(['localhost', '127.0.0.1']);

    const enrolled = ok(await cli(['enrollment', 'enrolled', '--type', 'server', ...remote(), '--json']));
    expect(enrolled.enrolled.find((e: { name: string }) => e.name === 'superlink').hosts).toEqual([
      'localhost',
      '127.0.0.1',
    ]);
    const cert = new X509Certificate(readFileSync(join(kit, 'startup', 'superlink.crt')));
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkHost('elsewhere.example.test')).toBeUndefined();

    const link = await startSuperLink({ stateDir: join(t.dir, 'superlink-state'), kit });
    const port = link.ports.fleet;
    const ca = await loadCa(cs.caDir);
    const site = await createSiteCertificate(ca, {
      name: 'site-1',
      type: 'client',
      outDir: join(t.dir, 'site-1'),
      validityDays: 1,
    });
    // A real SuperNode process by name, and a Fleet client in this process by address.
    const node = await startSuperNode({
      fleetUrl: `https://localhost:${port}`,
      cert: {
        name: 'site-1',
        type: 'client',
        cert: site.certPath,
        key: site.keyPath,
        ca: site.rootPath,
        serial: site.serial,
      },
      workDir: join(t.dir, 'site-1-work'),
      partitionId: 0,
    });
    expect(node.nodeId).toMatch(/^[0-9a-f]+$/);
    const channel = openChannel({
      baseUrl: `https://127.0.0.1:${port}`,
      tls: loadTlsMaterial({ cert: site.certPath, key: site.keyPath, ca: site.rootPath }),
    });
    try {
      const { nodeId } = await channel
        .client(Fleet)
        .activateNode({ heartbeatIntervalMs: 60_000, name: 'by-ip' });
      expect(nodeId).toBeTruthy();
    } finally {
      channel.close();
    }
    await node.stop();
    await link.stop();
  }, 120_000);
});
