/**
 * Refusals say what they are. A SuperNode tells a refusal no retry can change (not registered,
 * no key, another site, a clock off, revoked, another CA, a wrong address) from an outage: it
 * stops with the code, the hint and the exit code a user sees, and retries only what passes. The
 * SuperLink answers a revoked certificate after the handshake, on every method, and logs each
 * refusal; admins get the same precision; `log --stream` says when the SuperLink went away.
 *
 * SuperLinks and SuperNodes run in this process with real mutual TLS on 127.0.0.1; the CLI runs
 * in-process, except the two checks of a real process's exit and signal.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ExitCode, type PollenError } from '../src/errors.js';
import { Fleet } from '../src/gen/pollen/v1/fleet_pb.js';
import { loadCa } from '../src/pki/ca.js';
import { parseSshPrivateKey } from '../src/pki/openssh.js';
import { createSiteCertificate, revokeLocal, writeLocalCrl } from '../src/pki/site.js';
import { ClientApp } from '../src/sdk/app.js';
import { MetricRecord, RecordDict } from '../src/sdk/records.js';
import type { SuperLink } from '../src/superlink/superlink.js';
import { type SuperNode, type SuperNodeOptions, startSuperNode } from '../src/supernode/supernode.js';
import { ERROR_CODE_HEADER } from '../src/transport/errors.js';
import { openChannel } from '../src/transport/rpc-client.js';
import { loadTlsMaterial, type TlsMaterial } from '../src/transport/tls.js';
import { API_KEY, startLiveCertService, testPolicy } from './support/cert-service.js';
import { ensureBuilt, POLLEN_BIN, pollenInProcess } from './support/cli.js';
import { pollenErrorOf } from './support/errors.js';
import {
  type CertFiles,
  cliEnv,
  makePki,
  type Pki,
  sshKeygen,
  TINY_APP,
  tempDir,
  tlsOf,
  waitFor,
  writeFederationConfig,
} from './support/federation.js';
import { registerKeyFile } from './support/fleet-client.js';
import { startLocalSuperLink } from './support/inproc.js';
import { runningRun } from './support/runs.js';

const t = tempDir('pollen-refusals-');
const logLines: Record<string, unknown>[] = [];
const log = pino({ level: 'info' }, { write: (s: string) => void logLines.push(JSON.parse(s)) });
const events = (event: string) => logLines.filter((l) => l['event'] === event);

let pki: Pki;
/** Another CA of a project with the same name: only the signing CA differs. */
let other: Pki;
/** Certificate mode, with the CA's revocation list. */
let link: SuperLink;
/** Node-key mode. */
let keyLink: SuperLink;
const nodes: SuperNode[] = [];

beforeAll(async () => {
  pki = await makePki(join(t.dir, 'pki'));
  other = await makePki(join(t.dir, 'other'));
  const crl = await writeLocalCrl(pki.ca);
  link = await startLocalSuperLink({
    stateDir: join(t.dir, 'link'),
    tls: tlsOf(pki.server),
    project: 'fedtest',
    nodeAuth: false,
    crl: { file: crl, refreshMs: 100 },
    log,
  });
  keyLink = await startLocalSuperLink({
    stateDir: join(t.dir, 'key-link'),
    tls: tlsOf(pki.server),
    project: 'fedtest',
    nodeAuth: true,
    log,
  });
}, 30_000);

afterAll(async () => {
  for (const n of nodes) await n.close();
  await link?.close();
  await keyLink?.close();
  t.cleanup();
});

let count = 0;
/** A SuperNode of this process (an embedded ClientApp) at `url` with `tls`. */
async function nodeAt(
  url: string,
  tls: TlsMaterial,
  extra: Partial<SuperNodeOptions> = {},
): Promise<SuperNode> {
  const app = new ClientApp();
  app.train((msg) => msg.createReply(new RecordDict({ m: new MetricRecord({ ok: 1 }) })));
  const node = await startSuperNode({
    superlink: url,
    tls,
    name: `node-${count}`,
    workDir: join(t.dir, `node-${count++}`),
    app,
    log: pino({ level: 'silent' }),
    ...extra,
  });
  nodes.push(node);
  return node;
}

/** What the node stopped with: the code, the hint and the exit code a user sees. */
async function stoppedWith(node: SuperNode): Promise<PollenError> {
  const err = await node.failed;
  expect(err.hint.length).toBeGreaterThan(20);
  return err;
}

/** A client certificate of `pki` that trusts `root` (the other CA's, to distrust the SuperLink). */
async function client(of: Pki, name: string, root = pki): Promise<TlsMaterial> {
  return { ...tlsOf(await of.cert(name)), ca: tlsOf(root.server).ca };
}

describe('a SuperNode refused for good stops with a code, a hint and an exit code', () => {
  it('its certificate from another CA: CERT_NOT_ACCEPTED, read on the node from how the handshake ends', async () => {
    const node = await nodeAt(link.fleetUrl, await client(other, 'site-foreign'));
    const err = await stoppedWith(node);
    expect([err.code, err.exitCode]).toEqual(['CERT_NOT_ACCEPTED', ExitCode.UNAUTHORIZED]);
    expect(err.message).toContain('refused this certificate');
    expect(err.hint).toContain('another project or CA');
    // The SuperLink refused the handshake; it never answered this peer with a code.
    expect(events('tls.handshake.failed').length).toBeGreaterThan(0);
  });

  it("the SuperLink's certificate not from the kit's root: TLS_FAILED", async () => {
    const node = await nodeAt(link.fleetUrl, await client(pki, 'site-distrust', other));
    const err = await stoppedWith(node);
    expect([err.code, err.exitCode]).toEqual(['TLS_FAILED', ExitCode.UNAUTHORIZED]);
    expect(err.message).toMatch(/does not chain/);
    expect(err.hint).toContain('--superlink');
  });

  it('pointed at the Control API or the ServerAppIo port: WRONG_ENDPOINT, exit 2', async () => {
    const tls = await client(pki, 'site-lost');
    const control = await stoppedWith(await nodeAt(link.controlUrl, tls));
    expect([control.code, control.exitCode]).toEqual(['WRONG_ENDPOINT', ExitCode.USAGE]);
    expect(control.hint).toContain('Fleet API (port 9092');
    const appIo = await stoppedWith(await nodeAt(link.serverAppIoUrl.replace('http:', 'https:'), tls));
    expect([appIo.code, appIo.exitCode]).toEqual(['WRONG_ENDPOINT', ExitCode.USAGE]);
  });

  it("pointed at the project's Certificate Service: WRONG_ENDPOINT too", async () => {
    const dir = join(t.dir, 'cert-service');
    const live = await startLiveCertService(dir, {
      name: 'fedtest',
      policy: testPolicy('fedtest', ['{ name: "all", match: {}, action: approve }']),
      apiKey: API_KEY,
    });
    try {
      const ca = await loadCa(live.caDir);
      const site = await createSiteCertificate(ca, {
        name: 'site-cs',
        type: 'client',
        outDir: join(dir, 'site'),
        validityDays: 1,
      });
      const tls = loadTlsMaterial({ cert: site.certPath, key: site.keyPath, ca: site.rootPath });
      const err = await stoppedWith(await nodeAt(`https://127.0.0.1:${live.svc.port}`, tls));
      expect([err.code, err.exitCode], err.message).toEqual(['WRONG_ENDPOINT', ExitCode.USAGE]);
      expect(err.hint).toContain('Certificate Service (8443)');
    } finally {
      await live.close();
    }
  });

  it('revoked: every method is answered CERT_REVOKED after the handshake, and the node stops', async () => {
    const cert = await pki.cert('site-revoked');
    const node = await nodeAt(link.fleetUrl, tlsOf(cert), { heartbeatIntervalMs: 1_000 });
    await node.ready;
    await revokeLocal(pki.ca, { names: ['site-revoked'] });
    const err = await stoppedWith(node);
    expect([err.code, err.exitCode]).toEqual(['CERT_REVOKED', ExitCode.UNAUTHORIZED]);
    expect(err.hint).toContain('enroll again');
    // The connection it had was closed at the new CRL; its next one was answered with the code.
    expect(events('peer.closed').some((l) => l['peer'] === 'site-revoked')).toBe(true);
    expect(events('peer.refused').some((l) => l['code'] === 'CERT_REVOKED')).toBe(true);

    const ch = openChannel({ baseUrl: link.fleetUrl, tls: tlsOf(cert), defaultTimeoutMs: 10_000 });
    try {
      const fleet = ch.client(Fleet);
      const codeOf = async (p: Promise<unknown>) => {
        const e = ConnectError.from(
          await p.then(
            () => undefined,
            (x: unknown) => x,
          ),
        );
        return [e.metadata.get(ERROR_CODE_HEADER), e.code];
      };
      const revoked = ['CERT_REVOKED', Code.PermissionDenied];
      // Connect route, the fast unary route, a long poll, a stream of chunks.
      expect(await codeOf(fleet.activateNode({ heartbeatIntervalMs: 1000 }))).toEqual(revoked);
      expect(await codeOf(fleet.heartbeat({ heartbeatIntervalMs: 1000 }))).toEqual(revoked);
      expect(await codeOf(fleet.pullMessages({ maxMessages: 1, waitMs: 20_000 }))).toEqual(revoked);
      const id = 'a'.repeat(64);
      expect(
        await codeOf(
          fleet
            .pullChunks({ chunkIds: [id] })
            [Symbol.asyncIterator]()
            .next(),
        ),
      ).toEqual(revoked);
      expect(await codeOf(fleet.missingChunks({ chunkIds: [id] }))).toEqual(revoked);
      // The bulk chunk route, both ways.
      expect((await pollenErrorOf(ch.bulk!.get(id))).code).toBe('CERT_REVOKED');
      expect((await pollenErrorOf(ch.bulk!.put(id, new Uint8Array(4)))).code).toBe('CERT_REVOKED');
    } finally {
      ch.close();
    }
  });

  it('not registered, no key, another site, a clock off: the node-key refusals', async () => {
    const tls = tlsOf(await pki.cert('site-k'));
    const keyFile = sshKeygen(join(t.dir, 'node-key-1'), 256, 'site-k');
    const authKey = parseSshPrivateKey(readFileSync(keyFile));

    const unregistered = await stoppedWith(await nodeAt(keyLink.fleetUrl, tls, { authKey }));
    expect([unregistered.code, unregistered.exitCode]).toEqual(['NODE_NOT_REGISTERED', 5]);
    expect(unregistered.hint).toContain('register');

    const keyless = await stoppedWith(await nodeAt(keyLink.fleetUrl, tls));
    expect([keyless.code, keyless.exitCode]).toEqual(['NODE_AUTH_MISSING', 5]);
    expect(keyless.hint).toContain('--auth-supernode-private-key');

    await registerKeyFile(keyLink.state, keyFile, { name: 'k', site: 'site-other' });
    const elsewhere = await stoppedWith(await nodeAt(keyLink.fleetUrl, tls, { authKey }));
    expect([elsewhere.code, elsewhere.exitCode]).toEqual(['NODE_IDENTITY_MISMATCH', 5]);

    const skewed = await stoppedWith(
      await nodeAt(keyLink.fleetUrl, tlsOf(await pki.cert('site-other')), {
        authKey,
        clock: () => Date.now() + 5 * 60_000,
      }),
    );
    expect([skewed.code, skewed.exitCode]).toEqual(['NODE_AUTH_STALE', 5]);
    expect(skewed.hint).toContain('NTP');

    const refused = events('node.refused').map((l) => l['code']);
    for (const code of [
      'NODE_NOT_REGISTERED',
      'NODE_AUTH_MISSING',
      'NODE_IDENTITY_MISMATCH',
      'NODE_AUTH_STALE',
    ])
      expect(refused).toContain(code);
  });

  it('retries what passes: an address where nothing listens is UNAVAILABLE, with backoff', async () => {
    const seen: string[] = [];
    const held = await heldPort();
    held.server.close();
    const node = await nodeAt(`https://127.0.0.1:${held.port}`, await client(pki, 'site-patient'), {
      random: () => 0,
      onEvent: (e) => {
        if (e.kind === 'disconnected') seen.push(`${e.error.split(':')[0]} ${e.retryInMs}`);
      },
    });
    await vi.waitFor(() => expect(seen).toEqual(['UNAVAILABLE 375', 'UNAVAILABLE 750']), { timeout: 5_000 });
    expect(await Promise.race([node.failed, Promise.resolve('still trying')])).toBe('still trying');
  });
});

// -----------------------------------------------------------------------------------------------

/** A port held by a plain TCP server, as another process would hold it. */
function heldPort(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as { port: number }).port }),
    );
  });
}

describe('the SuperLink and its admins', () => {
  it('a port in use is ADDRESS_IN_USE with the option that moves it, not INTERNAL', async () => {
    const held = await heldPort();
    try {
      const r = await pollenInProcess([
        'superlink',
        '--cert',
        pki.server.cert,
        '--key',
        pki.server.key,
        '--root-ca',
        pki.server.ca,
        '--state-dir',
        join(t.dir, 'busy'),
        '--fleet-address',
        `127.0.0.1:${held.port}`,
        '--control-address',
        '127.0.0.1:0',
        '--serverappio-address',
        '127.0.0.1:0',
        '--log-level',
        'silent',
        '--json',
      ]);
      expect(r.code, r.stdout + r.stderr).toBe(ExitCode.CONFLICT);
      const e = r.json<{ error: { code: string; message: string; hint: string } }>().error;
      expect(e.code).toBe('ADDRESS_IN_USE');
      expect(e.message).toContain(`127.0.0.1:${held.port}`);
      expect(e.message).toContain('Fleet API');
      expect(e.hint).toContain('--fleet-address');
    } finally {
      held.server.close();
    }
  });

  /** `pollen list` with a federation entry of these credentials at `address`. */
  async function listAs(name: string, admin: CertFiles, url = link.controlUrl) {
    const config = writeFederationConfig(join(t.dir, `${name}.toml`), url, admin);
    const r = await pollenInProcess(['list', '--json'], { env: { POLLEN_CONFIG: config } });
    return { r, error: r.json<{ error: { code: string; message: string; hint: string } }>().error };
  }

  it('an admin certificate from another CA: CERT_NOT_ACCEPTED, exit 5', async () => {
    const { r, error } = await listAs('foreign', { ...other.admin, ca: pki.admin.ca });
    expect([error.code, r.code]).toEqual(['CERT_NOT_ACCEPTED', 5]);
    expect(error.hint).toContain('pollen config superlink add');
  });

  it('an admin that does not trust the SuperLink: TLS_FAILED, exit 5, not INTERNAL', async () => {
    const { r, error } = await listAs('distrust', { ...pki.admin, ca: other.admin.ca });
    expect([error.code, r.code]).toEqual(['TLS_FAILED', 5]);
    expect(error.message).toContain('does not chain');
    expect(error.hint).toContain('pollen config superlink list');
  });

  it('a client certificate on the Control API: PERMISSION_DENIED, exit 5, logged as control.refused', async () => {
    const { r, error } = await listAs('as-node', await pki.cert('site-admin-wannabe'));
    expect([error.code, r.code]).toEqual(['PERMISSION_DENIED', 5]);
    expect(events('control.refused').some((l) => l['peer'] === 'site-admin-wannabe')).toBe(true);
  });

  it('a SuperLink address that is the Fleet API: WRONG_ENDPOINT, exit 2', async () => {
    const { r, error } = await listAs('fleet', pki.admin, link.fleetUrl);
    expect([error.code, r.code]).toEqual(['WRONG_ENDPOINT', 2]);
    expect(error.hint).toContain('Control API');
  });

  it('log --stream says when the SuperLink went away: SUPERLINK_GONE, one document', async () => {
    const gone = await startLocalSuperLink({
      stateDir: join(t.dir, 'gone'),
      tls: tlsOf(pki.server),
      nodeAuth: false,
      log: pino({ level: 'silent' }),
    });
    const runId = await runningRun(gone.state);
    const config = writeFederationConfig(join(t.dir, 'gone.toml'), gone.controlUrl, pki.admin);
    // The stream is open once the SuperLink looks the run up for it.
    const looked = vi.spyOn(gone.link, 'wireRun');
    const following = pollenInProcess(['log', runId, '--stream', '--json'], {
      env: { POLLEN_CONFIG: config },
    });
    await vi.waitFor(() => expect(looked).toHaveBeenCalled(), { timeout: 10_000 });
    await gone.close();
    const r = await following;
    const d = r.json<{ ok: boolean; error: { code: string; message: string; hint: string } }>();
    expect(d.ok).toBe(false);
    expect([d.error.code, r.code]).toEqual(['SUPERLINK_GONE', ExitCode.UNAVAILABLE]);
    expect(d.error.message).toContain('went away');
    expect(d.error.hint).toContain(`pollen log ${runId}`);
  });
});

// -----------------------------------------------------------------------------------------------
// Real processes: the exit code of a refused `pollen supernode`, Ctrl-C on `pollen run --stream`.

describe('as real processes', () => {
  beforeAll(() => ensureBuilt('cli/main.js'), 120_000);

  const started: ChildProcess[] = [];
  afterAll(() => {
    for (const c of started) if (c.exitCode === null) c.kill('SIGKILL');
  });

  function launch(args: string[], env: NodeJS.ProcessEnv = cliEnv()) {
    const child = spawn(process.execPath, [POLLEN_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return { child, exit, stdout: () => stdout, stderr: () => stderr };
  }

  it('pollen supernode with an unregistered key exits 5 with NODE_NOT_REGISTERED and its hint', async () => {
    const cert = await pki.cert('site-proc');
    const key = sshKeygen(join(t.dir, 'proc-key'), 256, 'site-proc');
    const p = launch([
      'supernode',
      '--cert',
      cert.cert,
      '--key',
      cert.key,
      '--root-ca',
      cert.ca,
      '--superlink',
      new URL(keyLink.fleetUrl).host,
      '--auth-supernode-private-key',
      key,
      '--work-dir',
      join(t.dir, 'proc-node'),
      '--log-level',
      'info',
      '--json',
    ]);
    expect(await p.exit, p.stderr()).toBe(ExitCode.UNAUTHORIZED);
    const d = JSON.parse(p.stdout());
    expect(d).toMatchObject({ ok: false, error: { code: 'NODE_NOT_REGISTERED' } });
    expect(d.error.hint).toContain('pollen supernode register');
    expect(p.stderr()).toContain('"event":"supernode.refused"');
  }, 30_000);

  it('Ctrl-C on pollen run --stream: the run goes on, and the one document says how to follow or stop it', async () => {
    // A node that holds its instruction until the test ends: the run stays running.
    let release = (): void => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const app = new ClientApp();
    app.train(async (msg) => {
      await held;
      return msg.createReply(new RecordDict({ m: new MetricRecord({ ok: 1 }) }));
    });
    const node = await startSuperNode({
      superlink: link.fleetUrl,
      tls: tlsOf(await pki.cert('site-slow')),
      name: 'site-slow',
      workDir: join(t.dir, 'slow-node'),
      app,
      log: pino({ level: 'silent' }),
    });
    try {
      await node.ready;
      const config = writeFederationConfig(join(t.dir, 'run.toml'), link.controlUrl, pki.admin);
      const p = launch(
        ['run', TINY_APP, '--stream', '--json', '--run-config', 'min-nodes=1'],
        cliEnv({ POLLEN_CONFIG: config }),
      );
      await waitFor('the run to be followed', () => /following it/.test(p.stderr()), 60_000);
      p.child.kill('SIGINT');
      expect(await p.exit, p.stderr()).toBe(ExitCode.UNAVAILABLE);
      const d = JSON.parse(p.stdout());
      expect(d).toMatchObject({ ok: false, following: false, error: { code: 'CANCELLED' } });
      expect(d.follow).toBe(`pollen log ${d.runId} test --stream`);
      expect(d.stop).toBe(`pollen stop ${d.runId} test`);
      expect(d.error.message).toContain('the run goes on');
      expect((await link.state.getRun(d.runId))?.status).toMatch(/starting|running/);
    } finally {
      release();
      await node.close();
    }
  }, 90_000);
});
