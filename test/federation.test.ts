/**
 * A secure federation of real processes: `pollen superlink` and `pollen supernode` from the
 * built CLI, driven by an admin through `pollen run/list/log/stop` and `pollen supernode …`
 * with a POLLEN_CONFIG file. Happy paths, node keys (register/unregister without restart),
 * revocation and who may use which API.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Code, type ConnectError } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Control } from '../src/gen/pollen/v1/control_pb.js';
import { Fleet } from '../src/gen/pollen/v1/fleet_pb.js';
import { nodeIdFromPublicKey, parseSshPublicKey } from '../src/pki/openssh.js';
import { writeLocalCrl } from '../src/pki/site.js';
import { encodeNpz } from '../src/sdk/npz.js';
import { ArrayRecord } from '../src/sdk/records.js';
import { ERROR_CODE_HEADER, fromConnectError } from '../src/transport/errors.js';
import { openChannel } from '../src/transport/rpc-client.js';
import { refusal } from './support/errors.js';
import {
  childPids,
  completedRun,
  FEDERATION,
  type Federation,
  makePki,
  pollen,
  type RunJson,
  runDetails,
  type SuperNodeProc,
  sshKeygen,
  startFederation,
  startRun,
  stopAll,
  TINY_APP,
  tempDir,
  tlsOf,
  waitFor,
} from './support/federation.js';

afterAll(async () => {
  await stopAll();
});

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// -----------------------------------------------------------------------------------------------

describe('a secure federation of two SuperNodes', () => {
  let fed: Federation;
  let nodes: SuperNodeProc[];

  beforeAll(async () => {
    fed = await startFederation('pollen-fed-');
    nodes = [await fed.addNode('site-0', 0), await fed.addNode('site-1', 1)];
  }, 60_000);
  afterAll(async () => {
    await fed?.close();
  });

  it('runs the tiny app to completion; metrics, logs and listings show it', async () => {
    // The admin's commands as processes here; the other cases run them in this process.
    const out = await completedRun(fed, [], TINY_APP, { spawn: true });
    const runId = out.run.runId;
    // Round 1: node 0 adds 1 (10 examples), node 1 adds 2 (20 examples): (10·1 + 20·2) / 30.
    expect(out.rounds.map((r) => r.round)).toEqual([1, 2]);
    expect(out.rounds[0]!.metrics.w0).toBeCloseTo(5 / 3, 4);
    expect(out.rounds[1]!.metrics.w0).toBeCloseTo(10 / 3, 4);
    expect([...out.rounds[0]!.nodes].sort()).toEqual(nodes.map((n) => n.nodeId).sort());

    const details = await runDetails(fed, runId, { spawn: true });
    expect(details.run).toMatchObject({ runId, status: 'finished', subStatus: 'completed' });
    expect(details.rounds[0]!.metrics.w0).toBeCloseTo(1.6667, 4);
    const text = await fed.pollen(['list', FEDERATION, '--run-id', runId]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('finished:completed');
    expect(text.stdout).toMatch(/round\s+1\s.*w0 1\.6667/);
    expect(text.stdout).toMatch(/round\s+2\s.*w0 3\.3333/);

    const log = await fed.pollen(['log', runId, FEDERATION]);
    expect(log.code, log.stderr).toBe(0);
    expect(log.stdout).toContain('round 1: w[0] = 1.666');
    expect(log.stdout).toContain('round 2: w[0] = 3.333');
    expect(log.stdout).toContain('run completed');

    const list = await fed.pollen(['list', FEDERATION, '--json']);
    expect(list.code).toBe(0);
    expect(list.json().runs).toContainEqual(
      expect.objectContaining({ runId, status: 'finished', subStatus: 'completed' }),
    );

    const listed = await fed.nodeList({ spawn: true });
    expect(listed).toHaveLength(2);
    for (const n of nodes)
      expect(listed).toContainEqual(
        expect.objectContaining({ nodeId: n.nodeId, name: n.options.cert.name, status: 'online' }),
      );
  }, 90_000);

  it('keeps what the ServerApp saved: pollen pull downloads the same bytes, verified, into a folder', async () => {
    const { run } = await completedRun(fed, ['num-rounds=1']);
    const details = (await fed.query(['list', FEDERATION, '--run-id', run.runId, '--json'])).json<{
      artefacts: { name: string; size: number; hash: string }[];
    }>();
    expect(details.artefacts.map((a) => a.name)).toEqual(['final_model.npz', 'metrics/w0.json']);
    const dir = join(fed.dir, 'pulled');
    // The first pull as a process, the others in this process.
    const args = ['pull', run.runId, FEDERATION, '-o', dir, '--json'];
    const pull = () => fed.query(args);
    const r = await fed.pollen(args);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    type Pulled = { artefacts: { name: string; path: string; status: string }[] };
    expect(r.json<Pulled>().artefacts.map((a) => [a.name, a.path, a.status])).toEqual([
      ['final_model.npz', join(dir, 'final_model.npz'), 'pulled'],
      ['metrics/w0.json', join(dir, 'metrics', 'w0.json'), 'pulled'],
    ]);
    for (const a of details.artefacts) {
      const file = join(dir, ...a.name.split('/'));
      expect(`sha256:${createHash('sha256').update(readFileSync(file)).digest('hex')}`).toBe(a.hash);
      expect(statSync(file).mode & 0o777).toBe(0o600);
    }
    // The model the ServerApp saved, byte for byte: its final w (every entry is w[0]) as .npz.
    const w0 = JSON.parse(readFileSync(join(dir, 'metrics', 'w0.json'), 'utf8')) as number[];
    expect(w0).toHaveLength(1);
    expect(w0[0]).toBeCloseTo(5 / 3, 5);
    const model = Buffer.concat(encodeNpz(ArrayRecord.fromArrays({ w: new Float32Array(8).fill(w0[0]!) })));
    expect(readFileSync(join(dir, 'final_model.npz'))).toEqual(model);

    // Pulled again: the files hold the artefacts, nothing moves; a damaged file is replaced.
    expect((await pull()).json<Pulled>().artefacts.map((a) => a.status)).toEqual(['unchanged', 'unchanged']);
    writeFileSync(join(dir, 'final_model.npz'), 'damaged');
    expect((await pull()).json<Pulled>().artefacts.map((a) => a.status)).toEqual(['pulled', 'unchanged']);
    expect(readFileSync(join(dir, 'final_model.npz'))).toEqual(model);

    const text = await fed.query(['list', FEDERATION, '--run-id', run.runId]);
    expect(text.stdout).toContain(`pollen pull ${run.runId}`);
    expect(text.stdout).toMatch(new RegExp(`final_model\\.npz .*${details.artefacts[0]!.hash}`));
    const missing = await fed.query(['pull', 'feedfacefeedface', FEDERATION, '--json']);
    expect(missing.code).toBe(4);
    expect(missing.json().error.code).toBe('RUN_NOT_FOUND');
  }, 90_000);

  it('keeps a node id across a SuperNode restart', async () => {
    const before = nodes[0]!;
    before.kill('SIGKILL');
    await before.exited;
    const again = await fed.addNode('site-0', 0);
    expect(again.nodeId).toBe(before.nodeId);
    nodes[0] = again;
    const listed = await fed.nodeList();
    expect(listed.map((n) => n.nodeId).sort()).toEqual(nodes.map((n) => n.nodeId).sort());
    expect(listed.find((n) => n.nodeId === again.nodeId)?.status).toBe('online');
  }, 60_000);

  it('applies --run-config overrides and refuses unknown keys', async () => {
    const out = await completedRun(fed, ['num-rounds=1']);
    expect(out.rounds).toHaveLength(1);
    expect(out.rounds[0]!.metrics.w0).toBeCloseTo(5 / 3, 4);

    const bad = await fed.query(['run', TINY_APP, FEDERATION, '--run-config', 'no-such-key=3', '--json']);
    expect(bad.code).toBe(2);
    expect(bad.json().error.code).toBe('RUN_CONFIG_UNKNOWN');
    expect(bad.json().error.message).toContain('no-such-key');
    // Nothing was started for it.
    const runs = (await fed.query(['list', FEDERATION, '--json'])).json<{ runs: RunJson[] }>().runs;
    expect(runs.every((r) => r.status === 'finished')).toBe(true);
  }, 90_000);

  it('stops a long run: its ServerApp ends, nodes keep serving', async () => {
    const before = new Set(childPids(fed.link.pid));
    const runId = await startRun(fed, ['num-rounds=100', 'sleep-ms=60000', 'round-timeout=600']);
    const serverApp = await waitFor('the ServerApp process', () =>
      childPids(fed.link.pid).find((p) => !before.has(p)),
    );
    await waitFor(
      'the run to be running',
      async () => (await runDetails(fed, runId)).run.status === 'running',
    );
    // Both ClientApps got their instruction.
    await waitFor('ClientApps on both nodes', () => nodes.every((n) => childPids(n.pid).length > 0), 20_000);

    const stop = await fed.pollen(['stop', runId, FEDERATION, '--json']);
    expect(stop.code, stop.stderr).toBe(0);
    expect(stop.json().run).toMatchObject({ runId, status: 'finished', subStatus: 'stopped' });
    await waitFor('the ServerApp to end', () => !alive(serverApp), 15_000);
    const d = await runDetails(fed, runId);
    expect(d.run.subStatus).toBe('stopped');
    expect(d.run.reason).toContain('stopped by');
    const again = await fed.query(['stop', runId, FEDERATION, '--json']);
    expect(again.code).not.toBe(0);
    expect(again.json().error.code).toBe('RUN_STATE_CONFLICT');

    const next = await completedRun(fed, ['num-rounds=1']);
    expect([...next.rounds[0]!.nodes].sort()).toEqual(nodes.map((n) => n.nodeId).sort());
  }, 120_000);
});

// -----------------------------------------------------------------------------------------------

describe('node-key mode (--enable-supernode-auth)', () => {
  let fed: Federation;
  const keys: string[] = [];

  beforeAll(async () => {
    fed = await startFederation('pollen-fedkey-', { nodeAuth: true });
    keys.push(sshKeygen(join(fed.dir, 'key-a'), 384, 'node-a'));
    keys.push(sshKeygen(join(fed.dir, 'key-b'), 256, 'node-b'));
    keys.push(sshKeygen(join(fed.dir, 'key-c'), 384, 'node-c'));
  }, 60_000);
  afterAll(async () => {
    await fed?.close();
  });

  const keyId = (file: string) => nodeIdFromPublicKey(parseSshPublicKey(readFileSync(`${file}.pub`, 'utf8')));
  /** Refused activations, counted from the lines the node prints (the CLI's retry lines). */
  const refusals = (n: SuperNodeProc) =>
    n
      .stderr()
      .split('\n')
      .filter((line) => line.includes('NODE_NOT_REGISTERED')).length;

  it('admits registered keys only; register and unregister take effect without a SuperLink restart', async () => {
    // A node with an unregistered key is refused for good: it stops with the code and exit 5.
    const c = await fed.addNode('key-site-c', 2, { authKey: keys[2], waitConnected: false });
    expect((await c.exited).code).toBe(5);
    expect(refusals(c)).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(c.stdout()).error).toMatchObject({ code: 'NODE_NOT_REGISTERED' });

    const ids: string[] = [];
    for (const [i, k] of keys.slice(0, 2).entries()) {
      const args = ['supernode', 'register', `${k}.pub`, FEDERATION, '--json'];
      const r = await (i === 0 ? fed.pollen(args) : fed.query(args));
      expect(r.code, r.stderr).toBe(0);
      expect(r.json().nodeId).toBe(keyId(k));
      ids.push(r.json().nodeId);
    }
    const again = await fed.query(['supernode', 'register', `${keys[0]}.pub`, FEDERATION, '--json']);
    expect(again.code).not.toBe(0);
    expect(again.json().error.code).toBe('NODE_ALREADY_REGISTERED');

    const a = await fed.addNode('key-site-a', 0, { authKey: keys[0] });
    const b = await fed.addNode('key-site-b', 1, { authKey: keys[1] });
    expect([a.nodeId, b.nodeId]).toEqual(ids);

    let listed = await fed.nodeList();
    expect(listed.map((n) => n.nodeId).sort()).toEqual([...ids].sort());
    expect(listed.every((n) => n.status === 'online' && n.registered)).toBe(true);

    // Registered now: started again, it gets in, with no SuperLink restart.
    const reg = await fed.pollen(['supernode', 'register', `${keys[2]}.pub`, FEDERATION]);
    expect(reg.code, reg.stderr).toBe(0);
    const idC = reg.stdout.trim(); // the text output is the node id alone
    expect(idC).toBe(keyId(keys[2]!));

    // Meanwhile: unregistering B revokes its session; it is refused and stops.
    const seenB = refusals(b);
    const un = await fed.pollen(['supernode', 'unregister', b.nodeId, FEDERATION, '--json']);
    expect(un.code, un.stderr).toBe(0);
    expect(un.json()).toMatchObject({ nodeId: b.nodeId, unregistered: true });
    expect((await b.exited).code).toBe(5);
    expect(refusals(b)).toBeGreaterThan(seenB);
    listed = await fed.nodeList();
    expect(listed.find((n) => n.nodeId === b.nodeId)).toMatchObject({
      status: 'unregistered',
      registered: false,
    });
    const twice = await fed.query(['supernode', 'unregister', b.nodeId, FEDERATION, '--json']);
    expect(twice.code).not.toBe(0);

    const c2 = await fed.addNode('key-site-c', 2, { authKey: keys[2] });
    expect(c2.nodeId).toBe(idC);
    listed = await fed.nodeList();
    expect(listed.find((n) => n.nodeId === idC)?.status).toBe('online');
    expect(listed.find((n) => n.nodeId === b.nodeId)?.status).toBe('unregistered');

    // A run with the nodes that remain: A (partition 0) and C (partition 2).
    const out = await completedRun(fed, ['num-rounds=1']);
    expect([...out.rounds[0]!.nodes].sort()).toEqual([a.nodeId, idC].sort());
    expect(out.rounds[0]!.metrics.w0).toBeCloseTo((10 * 1 + 30 * 3) / 40, 4);
  }, 150_000);
});

// -----------------------------------------------------------------------------------------------

describe('revocation and who may use which API', () => {
  let fed: Federation;
  const t = tempDir('pollen-fedcrl-');

  beforeAll(async () => {
    const pki = await makePki(t.dir);
    const crl = await writeLocalCrl(pki.ca);
    fed = await startFederation('', { pki, dir: t.dir, crl, crlRefreshSeconds: 1 });
  }, 60_000);
  afterAll(async () => {
    await fed?.close();
    t.cleanup();
  });

  const fleetCall = async (tls: ReturnType<typeof tlsOf>) => {
    const ch = openChannel({ baseUrl: fed.link.fleetUrl, tls, defaultTimeoutMs: 10_000 });
    try {
      return await ch.client(Fleet).heartbeat({ heartbeatIntervalMs: 1000 });
    } finally {
      ch.close();
    }
  };

  /** Refused by TLS (a certificate of another CA, or none): no handler answered with a code. */
  const expectTlsRefusal = (e: ConnectError): void => {
    expect(e.metadata.get(ERROR_CODE_HEADER)).toBeNull();
    // How the reset surfaces depends on timing: cancelled, aborted, unavailable or internal.
    expect([Code.Canceled, Code.Aborted, Code.Unavailable, Code.Internal]).toContain(e.code);
  };

  it('disconnects a revoked SuperNode, answers it CERT_REVOKED and it stops; the others keep working', async () => {
    const keep = await fed.addNode('crl-site-0', 0);
    const gone = await fed.addNode('crl-site-1', 1);
    expect((await fed.nodeList()).filter((n) => n.status === 'online')).toHaveLength(2);
    const goneCert = await fed.pki.cert('crl-site-1');
    await fleetCall(tlsOf(goneCert)); // admitted before the revocation

    const r = await pollen(['cert', 'revoke', 'crl-site-1', '-c', fed.pki.caDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json().revoked).toEqual([expect.objectContaining({ name: 'crl-site-1' })]);

    await waitFor('the SuperLink to close the revoked connection', () =>
      /"event":"peer.closed".*revoked/.test(fed.link.stderr()),
    );
    // After the handshake (its certificate is of our CA), with the code: not a connection reset.
    const revoked = await refusal(fleetCall(tlsOf(goneCert)));
    expect([revoked.metadata.get(ERROR_CODE_HEADER), revoked.code]).toEqual([
      'CERT_REVOKED',
      Code.PermissionDenied,
    ]);
    // The node stops with the code, its hint and exit 5.
    expect((await gone.exited).code).toBe(5);
    // Its result document was printed when it connected: the error document goes to stderr.
    expect(gone.stderr()).toContain('"code": "CERT_REVOKED"');
    await waitFor(
      'the revoked node to be offline',
      async () => (await fed.nodeList()).find((n) => n.nodeId === gone.nodeId)?.status === 'offline',
      30_000,
      500,
    );

    const out = await completedRun(fed, ['num-rounds=1', 'min-nodes=1']);
    expect(out.rounds[0]!.nodes).toEqual([keep.nodeId]);
    expect(out.rounds[0]!.metrics.w0).toBeCloseTo(1, 4);
    expect((await fed.nodeList()).find((n) => n.nodeId === gone.nodeId)?.status).toBe('offline');
  }, 90_000);

  it('refuses a client certificate of another CA at the TLS handshake', async () => {
    // Same project name, same participant name: only the signing CA differs.
    const other = await makePki(join(fed.dir, 'other-project'), 'fedtest');
    const foreign = await other.cert('crl-site-0');
    const tls = { ...tlsOf(foreign), ca: readFileSync(fed.pki.server.ca, 'utf8') };
    expectTlsRefusal(await refusal(fleetCall(tls)));
    expect((await fed.nodeList()).length).toBe(2);
  }, 30_000);

  it('lets only client certificates act as SuperNodes, only admin certificates use Control', async () => {
    // An admin certificate is a valid TLS client: the Fleet API refuses it by type.
    const admin = await refusal(fleetCall(tlsOf(fed.pki.admin)));
    expect(fromConnectError(admin).code).toBe('PERMISSION_DENIED');
    expect(admin.code).toBe(Code.PermissionDenied);
    // A server certificate is not even a TLS client certificate (no clientAuth usage).
    expectTlsRefusal(await refusal(fleetCall(tlsOf(fed.pki.server))));
    const client = await fed.pki.cert('crl-site-0');
    const ch = openChannel({ baseUrl: fed.link.controlUrl, tls: tlsOf(client), defaultTimeoutMs: 10_000 });
    try {
      const control = ch.client(Control);
      for (const call of [
        () => control.listRuns({}),
        () => control.listNodes({}),
        () => control.stopRun({ runId: 'x' }),
      ]) {
        const e = await call().then(
          () => undefined,
          (x: unknown) => fromConnectError(x),
        );
        expect(e?.code).toBe('PERMISSION_DENIED');
      }
    } finally {
      ch.close();
    }
    // The admin can.
    expect((await fed.nodeList()).length).toBe(2);
  }, 30_000);
});
