/**
 * The Control API's handlers in memory (Connect's router transport, test/support/memory-link.ts):
 * who may call it, starting, listing, stopping and following runs, app bundle uploads and node
 * keys, over a Link on SQLite and a ManualClock. No ServerApp process is started (a stand-in
 * launcher marks a started run running); runs of real processes over mutual TLS are in
 * test/federation.test.ts and test/cli-runtime.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it, vi } from 'vitest';
import { localTokens } from '../../test/support/local-tokens.js';
import { type MemoryLink, memoryLinks } from '../../test/support/memory-link.js';
import { MANIFEST_FILE, manifestBytes, sha256, writeTar } from '../apps/bundle.js';
import { submitRun } from '../apps/submit.js';
import type { Role } from '../identity/identity.js';
import { DEFAULT_ACCESS_POLICY } from '../identity/rights.js';
import { rpcChunkTransport } from '../transport/chunk-rpc.js';
import { downloadChunks, uploadChunks } from '../transport/chunk-transfer.js';
import { chunkId } from '../transport/chunks.js';
import { fromConnectError } from '../transport/errors.js';
import { configToWire } from '../transport/wire.js';

const start = memoryLinks('control-service');
const TINY = resolve(import.meta.dirname, '../../test/fixtures/apps/tiny');

/** The Pollen code a call fails with ('ok' if it does not). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return fromConnectError(e).code;
  }
}

/** The Pollen code, the Connect code and the message of a refusal. */
async function refusal(p: Promise<unknown>): Promise<{ code: string; connect: string; message: string }> {
  try {
    await p;
  } catch (e) {
    const pe = fromConnectError(e);
    // Chunk transports hand back the PollenError, with the Connect error as its cause.
    const ce = ConnectError.from(pe.cause instanceof ConnectError ? pe.cause : e);
    return { code: pe.code, connect: Code[ce.code], message: pe.message };
  }
  throw new Error('the call was not refused');
}

/** A small valid bundle (config `rounds` = 3, `lr` = 0.1), uploaded as one chunk; its Fab. */
async function uploadBundle(l: MemoryLink, name = 'demo') {
  const enc = (s: string) => new TextEncoder().encode(s);
  const files = [
    { path: 'client.js', data: enc('export default 1;\n') },
    { path: 'server.js', data: enc('export default 2;\n') },
  ];
  const manifest = {
    format: 1 as const,
    name,
    version: '1.0.0',
    serverapp: 'server.js',
    clientapp: 'client.js',
    config: { rounds: 3, lr: 0.1 },
    sdkVersion: '0.1.0',
    files: files.map((f) => ({ path: f.path, size: f.data.length, sha256: sha256(f.data) })),
  };
  const bytes = writeTar([{ path: MANIFEST_FILE, data: manifestBytes(manifest) }, ...files]);
  const id = chunkId(bytes);
  await uploadChunks(rpcChunkTransport(l.admin()), new Map([[id, bytes]]));
  return {
    hash: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
    size: BigInt(bytes.byteLength),
    chunkIds: [id],
    name,
    version: '1.0.0',
  };
}

describe('who may call the Control API', () => {
  it('refuses a caller without a certificate (UNAUTHENTICATED), a site certificate or another project’s admin (PERMISSION_DENIED), on every method', async () => {
    const l = await start();
    const callers = {
      none: l.control(undefined),
      site: l.control(l.peer('site-1')),
      stranger: l.control(l.peer('admin@other', { type: 'admin', project: 'other' })),
    };
    const expected = {
      none: { code: 'UNAUTHENTICATED', connect: 'Unauthenticated' },
      site: { code: 'PERMISSION_DENIED', connect: 'PermissionDenied' },
      stranger: { code: 'PERMISSION_DENIED', connect: 'PermissionDenied' },
    };
    const c = randomBytes(100);
    for (const [who, control] of Object.entries(callers)) {
      const calls = {
        startRun: control.startRun({}),
        listRuns: control.listRuns({}),
        getRunDetails: control.getRunDetails({ runId: 'x' }),
        stopRun: control.stopRun({ runId: 'x' }),
        streamLogs: (async () => {
          for await (const _ of control.streamLogs({ runId: 'x' }));
        })(),
        listNodes: control.listNodes({}),
        registerNode: control.registerNode({ publicKey: l.nodeKey().publicKey }),
        unregisterNode: control.unregisterNode({ nodeId: 'x' }),
        missingChunks: control.missingChunks({ chunkIds: [chunkId(c)] }),
        pushChunks: uploadChunks(rpcChunkTransport(control), new Map([[chunkId(c), c]])),
        pullChunks: downloadChunks(rpcChunkTransport(control), [chunkId(c)], () => {}, {
          scope: { runId: 'x' },
        }),
      };
      for (const [method, call] of Object.entries(calls)) {
        const r = await refusal(call);
        expect({ who, method, code: r.code, connect: r.connect }).toEqual({
          who,
          method,
          ...expected[who as keyof typeof expected],
        });
      }
    }
    expect((await refusal(callers.site.listRuns({}))).message).toBe(
      'A client certificate cannot use the Control API',
    );
    expect((await refusal(callers.stranger.listRuns({}))).message).toBe(
      'The certificate belongs to project other',
    );
    expect(await l.state.listRuns({ limit: 10 })).toEqual([]);
    expect(await l.link.chunks.has(chunkId(c))).toBe(false);
  });

  it('takes every caller as the local admin when the SuperLink runs without TLS', async () => {
    const l = await start({ insecure: true });
    const control = l.control(undefined);
    const fab = await uploadBundle(l);
    const { runId } = await control.startRun({ fab });
    expect((await control.getRunDetails({ runId })).run?.createdBy).toBe('local');
  });
});

describe('StartRun', () => {
  it('starts a run of an uploaded bundle with its default config and the overrides, fixed at submission', async () => {
    const l = await start();
    const admin = l.admin('alice@test');
    const fab = await uploadBundle(l);
    await l.federations(l.peer('alice@test', { type: 'admin' })).createFederation({ name: 'fed-a' });
    const { runId } = await admin.startRun({
      fab,
      runConfig: configToWire({ lr: 0.5 }),
      federation: 'fed-a',
    });
    expect(l.launcher.started).toEqual([runId]);
    await vi.waitFor(async () => expect((await l.state.getRun(runId))?.status).toBe('running'));
    expect(await l.state.getRun(runId)).toMatchObject({
      fabHash: fab.hash,
      fabName: 'demo',
      fabVersion: '1.0.0',
      runConfig: { rounds: 3, lr: 0.5 },
      federation: 'fed-a',
      createdBy: 'alice@test',
      createdAt: l.clock.now(),
    });
    expect(l.logs).toContainEqual(
      expect.objectContaining({ msg: 'run submitted', runId, by: 'alice@test', app: 'demo' }),
    );
    // No federation named: the default one.
    const second = await admin.startRun({ fab });
    expect((await l.state.getRun(second.runId))?.federation).toBe('default');
  });

  it('refuses no bundle (INVALID_REQUEST), an unknown config key (RUN_CONFIG_UNKNOWN), missing chunks and bundles that do not add up', async () => {
    const l = await start();
    const admin = l.admin();
    const fab = await uploadBundle(l);
    expect(await refusal(admin.startRun({}))).toMatchObject({
      code: 'INVALID_REQUEST',
      connect: 'InvalidArgument',
    });
    expect(await refusal(admin.startRun({ fab, runConfig: configToWire({ epochs: 1 }) }))).toMatchObject({
      code: 'RUN_CONFIG_UNKNOWN',
      message: expect.stringMatching(/^The app \S+ has no run config "epochs"$/),
    });
    const absent = chunkId(randomBytes(10));
    expect(await codeOf(admin.startRun({ fab: { ...fab, chunkIds: [absent] } }))).toBe('CHUNK_MISSING');
    expect(await codeOf(admin.startRun({ fab: { ...fab, size: fab.size + 1n } }))).toBe('BUNDLE_INVALID');
    expect(await codeOf(admin.startRun({ fab: { ...fab, hash: 'md5:abc' } }))).toBe('BUNDLE_INVALID');
    // Bytes that are no bundle, with a hash and size that add up.
    const junk = randomBytes(3000);
    await uploadChunks(rpcChunkTransport(admin), new Map([[chunkId(junk), junk]]));
    const junkFab = {
      hash: `sha256:${chunkId(junk)}`,
      size: 3000n,
      chunkIds: [chunkId(junk)],
      name: 'j',
      version: '1',
    };
    expect(await refusal(admin.startRun({ fab: junkFab }))).toMatchObject({
      code: 'BUNDLE_INVALID',
      connect: 'InvalidArgument',
    });
    expect(l.launcher.started).toEqual([]);
    expect(await l.state.listRuns({ limit: 10 })).toEqual([]);
  });

  it('takes a run that `pollen run` submits (the app built, its chunks pushed over the Control API)', async () => {
    const l = await start();
    const admin = l.admin();
    const submitted = await submitRun({
      control: admin,
      chunks: rpcChunkTransport(admin),
      appDir: TINY,
      runConfig: { 'num-rounds': 1 },
      federation: 'default',
    });
    expect(submitted.app).toBe('pollen-test-tiny');
    expect(await l.state.getRun(submitted.runId)).toMatchObject({
      fabHash: submitted.hash,
      runConfig: { 'num-rounds': 1, size: 8, 'min-nodes': 2 },
    });
  }, 30_000);
});

describe('ListRuns, GetRunDetails and StopRun', () => {
  it('list runs newest first up to the limit, and show one with its rounds', async () => {
    const l = await start();
    const admin = l.admin();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await l.runningRun());
      await l.clock.advance(1_000);
    }
    expect((await admin.listRuns({})).runs.map((r) => r.runId)).toEqual([...ids].reverse());
    expect((await admin.listRuns({ limit: 2 })).runs.map((r) => r.runId)).toEqual([ids[2], ids[1]]);
    await l.state.addRoundMetrics(ids[0]!, {
      round: 1,
      metrics: { loss: 0.5 },
      nodeIds: ['n1'],
      bytesSent: 10,
      bytesReceived: 20,
      replies: 1,
      failures: 2,
    });
    const details = await admin.getRunDetails({ runId: ids[0]! });
    expect(details.run).toMatchObject({ runId: ids[0], status: 'running', createdBy: 'test' });
    expect(details.rounds).toEqual([
      expect.objectContaining({
        round: 1,
        at: BigInt(l.clock.now()),
        metrics: { loss: 0.5 },
        nodeIds: ['n1'],
        bytesSent: 10n,
        bytesReceived: 20n,
        replies: 1,
        failures: 2,
      }),
    ]);
    expect(await refusal(admin.getRunDetails({ runId: 'feedfacefeedface' }))).toMatchObject({
      code: 'RUN_NOT_FOUND',
      connect: 'NotFound',
    });
  });

  it('StopRun finishes a run as stopped by the admin; a finished run is RUN_STATE_CONFLICT, an unknown one RUN_NOT_FOUND', async () => {
    const l = await start();
    const admin = l.admin('bob@test');
    const runId = await l.runningRun();
    const { run } = await admin.stopRun({ runId });
    expect(run).toMatchObject({
      runId,
      status: 'finished',
      subStatus: 'stopped',
      reason: 'stopped by bob@test',
      finishedAt: BigInt(l.clock.now()),
    });
    expect(await refusal(admin.stopRun({ runId }))).toMatchObject({
      code: 'RUN_STATE_CONFLICT',
      connect: 'FailedPrecondition',
      message: `Run ${runId} already finished (stopped)`,
    });
    expect(await codeOf(admin.stopRun({ runId: 'feedfacefeedface' }))).toBe('RUN_NOT_FOUND');
  });
});

describe('StreamLogs', () => {
  it('sends a run’s lines after a sequence number, then the run, and ends', async () => {
    const l = await start();
    const admin = l.admin();
    const runId = await l.runningRun();
    await l.state.appendLogs(runId, [
      { stream: 'stdout', text: 'one' },
      { stream: 'stderr', text: 'two' },
      { stream: 'stdout', text: 'three' },
    ]);
    const messages = [];
    for await (const m of admin.streamLogs({ runId, afterSeq: 1n })) messages.push(m);
    expect(messages.map((m) => m.lines.map((x) => [x.seq, x.stream, x.text]))).toEqual([
      [
        [2n, 'stderr', 'two'],
        [3n, 'stdout', 'three'],
      ],
      [],
    ]);
    expect(messages[1]!.run).toMatchObject({ runId, status: 'running' });
    expect(messages[0]!.lines[0]!.at).toBe(BigInt(l.clock.now()));
    expect(
      await codeOf(
        (async () => {
          for await (const _ of admin.streamLogs({ runId: 'feedfacefeedface' }));
        })(),
      ),
    ).toBe('RUN_NOT_FOUND');
  });

  it('follows a run on the clock: new lines every 250 ms, until the run finishes with its last lines', async () => {
    const l = await start();
    const admin = l.admin();
    const runId = await l.runningRun();
    await l.state.appendLogs(runId, [{ stream: 'stdout', text: 'round 1' }]);
    const stream = admin.streamLogs({ runId, follow: true })[Symbol.asyncIterator]();
    const texts = async () => {
      const next = await stream.next();
      return next.done
        ? 'done'
        : { lines: next.value.lines.map((x) => x.text), status: next.value.run?.status };
    };
    expect(await texts()).toEqual({ lines: ['round 1'], status: undefined });
    const second = texts();
    await vi.waitFor(() => expect(l.clock.sleeping).toBe(1));
    await l.state.appendLogs(runId, [{ stream: 'stdout', text: 'round 2' }]);
    await l.clock.advance(250);
    expect(await second).toEqual({ lines: ['round 2'], status: undefined });
    const last = texts();
    await vi.waitFor(() => expect(l.clock.sleeping).toBe(1));
    await l.launcher.finish(runId, 'completed');
    await l.clock.advance(250);
    expect(await last).toEqual({ lines: ['run completed'], status: undefined });
    expect(await texts()).toEqual({ lines: [], status: 'finished' });
    expect(await texts()).toBe('done');
  });

  it('ends a followed stream when the admin goes away', async () => {
    const l = await start();
    const admin = l.admin();
    const runId = await l.runningRun();
    const ac = new AbortController();
    const reading = (async () => {
      for await (const _ of admin.streamLogs({ runId, follow: true }, { signal: ac.signal }));
    })();
    await vi.waitFor(() => expect(l.clock.sleeping).toBe(1));
    ac.abort();
    expect(await codeOf(reading)).toBe('UNAVAILABLE');
    await vi.waitFor(() => expect(l.clock.sleeping).toBe(0));
  });
});

describe('node keys', () => {
  it('RegisterNode registers a key (bound to a site when named), ListNodes shows it; bad keys and site names are refused', async () => {
    const l = await start({ nodeAuth: true });
    const admin = l.admin('root@test');
    const key = l.nodeKey();
    const { nodeId } = await admin.registerNode({ publicKey: `${key.publicKey} lab-node`, site: 'site-1' });
    expect(nodeId).toBe(key.nodeId);
    const other = l.nodeKey();
    await admin.registerNode({ publicKey: other.publicKey, name: 'named' });
    const { nodeAuth, nodes } = await admin.listNodes({});
    expect(nodeAuth).toBe(true);
    expect(nodes.find((n) => n.nodeId === nodeId)).toMatchObject({
      name: 'lab-node',
      registered: true,
      status: 'registered',
      publicKey: key.publicKey,
      site: 'site-1',
      siteBoundBy: 'admin:root@test',
      siteBoundAt: BigInt(l.clock.now()),
    });
    expect(nodes.find((n) => n.nodeId === other.nodeId)).toMatchObject({
      name: 'named',
      site: '',
      siteBoundBy: '',
    });
    expect(l.logs).toContainEqual(
      expect.objectContaining({ event: 'node.key.registered', nodeId, by: 'root@test', site: 'site-1' }),
    );
    expect(await codeOf(admin.registerNode({ publicKey: 'not a key' }))).toBe('SSH_KEY_INVALID');
    expect(await codeOf(admin.registerNode({ publicKey: 'ssh-rsa AAAAB3Nza' }))).toBe('SSH_KEY_UNSUPPORTED');
    expect(
      await refusal(admin.registerNode({ publicKey: l.nodeKey().publicKey, site: 'no spaces' })),
    ).toMatchObject({
      code: 'INVALID_ARGUMENT',
      connect: 'InvalidArgument',
    });
  });

  it('UnregisterNode ends the node’s sessions and its waiting poll at once; it cannot come back', async () => {
    const l = await start({ nodeAuth: true });
    const admin = l.admin();
    const key = l.nodeKey();
    await admin.registerNode({ publicKey: key.publicKey });
    const holder: { session?: { sessionId: string; secret: Uint8Array } } = {};
    const fleet = l.fleet({ peer: l.peer('site-1'), signer: key.signer, holder });
    holder.session = (await fleet.activateNode({ heartbeatIntervalMs: 10_000 })).session;
    const poll = fleet.pullMessages({ waitMs: 20_000 });
    await vi.waitFor(() => expect(l.link.instructions.count(key.nodeId)).toBe(1));
    await admin.unregisterNode({ nodeId: key.nodeId });
    expect((await poll).messages).toEqual([]);
    expect(l.verifier?.sessionCount).toBe(0);
    expect(await codeOf(fleet.heartbeat({}))).toBe('NODE_SESSION_EXPIRED');
    holder.session = undefined;
    expect(await codeOf(fleet.activateNode({}))).toBe('NODE_NOT_REGISTERED');
    expect((await admin.listNodes({})).nodes).toEqual([
      expect.objectContaining({ nodeId: key.nodeId, registered: false, status: 'unregistered' }),
    ]);
    expect(l.logs).toContainEqual(
      expect.objectContaining({ event: 'node.key.unregistered', nodeId: key.nodeId }),
    );
    expect(await codeOf(admin.unregisterNode({ nodeId: key.nodeId }))).toBe('NODE_NOT_REGISTERED');
    expect(await codeOf(admin.unregisterNode({ nodeId: 'feedfacefeedface' }))).toBe('NODE_UNKNOWN');
  });
});

describe('bundle chunks', () => {
  it('go to the shared store, verified on arrival; MissingChunks answers what is not there', async () => {
    const l = await start();
    const admin = l.admin();
    const c = randomBytes(5000);
    const id = chunkId(c);
    expect((await admin.missingChunks({ chunkIds: [id] })).chunkIds).toEqual([id]);
    expect((await uploadChunks(rpcChunkTransport(admin), new Map([[id, c]]))).sent).toBe(1);
    expect((await admin.missingChunks({ chunkIds: [id] })).chunkIds).toEqual([]);
    expect(await l.link.chunks.has(id)).toBe(true);
    const forged = chunkId(randomBytes(10));
    expect(await codeOf(uploadChunks(rpcChunkTransport(admin), new Map([[forged, c]])))).toBe(
      'CHUNK_MISMATCH',
    );
    expect(await l.link.chunks.has(forged)).toBe(false);
  });

  it('are refused past the disk budget with STORAGE_FULL', async () => {
    const l = await start({ limits: { chunkDiskBudgetBytes: 8 * 1024 } });
    const admin = l.admin();
    const fits = randomBytes(6 * 1024);
    const over = randomBytes(6 * 1024);
    await uploadChunks(rpcChunkTransport(admin), new Map([[chunkId(fits), fits]]));
    expect(await codeOf(uploadChunks(rpcChunkTransport(admin), new Map([[chunkId(over), over]])))).toBe(
      'STORAGE_FULL',
    );
    expect(await l.link.chunks.has(chunkId(over))).toBe(false);
  });
});

describe('one identity per call, and the rights it holds', () => {
  it('takes a login token as a person with the token’s roles and organisation (WhoAmI), and records them on the runs they start', async () => {
    const tokens = await localTokens();
    const l = await start({ control: { tokens: tokens.verifier } });
    const token = await tokens.sign('u-123', { roles: ['lead'], org: 'Alpha', email: 'ana@alpha.example' });
    const ana = l.control(undefined, { authorization: `Bearer ${token}` });
    expect((await ana.whoAmI({})).identity).toMatchObject({
      kind: 'user',
      subject: 'u-123',
      name: 'ana@alpha.example',
      org: 'Alpha',
      roles: ['lead'],
      email: 'ana@alpha.example',
    });
    const { runId } = await ana.startRun({ fab: await uploadBundle(l) });
    expect(await l.state.getRun(runId)).toMatchObject({
      createdBy: 'ana@alpha.example',
      createdBySubject: 'u-123',
      org: 'Alpha',
    });
    // A certificate's identity: its name, O= and role; no role means a project admin.
    const cert = l.control(l.peer('org@beta', { type: 'admin', org: 'Beta', role: 'org_admin' }));
    expect((await cert.whoAmI({})).identity).toMatchObject({
      kind: 'certificate',
      subject: 'org@beta',
      org: 'Beta',
      roles: ['org_admin'],
    });
    expect((await l.admin().whoAmI({})).identity).toMatchObject({ roles: ['project_admin'], org: '' });
    const odd = l.control(l.peer('odd@x', { type: 'admin', role: 'researcher' }));
    expect((await odd.whoAmI({})).identity?.roles).toEqual([]);
    expect(await codeOf(odd.listRuns({}))).toBe('RIGHT_MISSING');
  });

  it('refuses a certificate and a token together, two tokens, a header that is not Bearer, and tokens it has no verifier for', async () => {
    const tokens = await localTokens();
    const l = await start({ control: { tokens: tokens.verifier } });
    const token = await tokens.sign('u-1', { roles: ['project_admin'] });
    const both = l.control(l.peer('admin@test', { type: 'admin' }), { authorization: `Bearer ${token}` });
    expect(await refusal(both.listRuns({}))).toMatchObject({
      code: 'IDENTITY_AMBIGUOUS',
      connect: 'Unauthenticated',
    });
    const two = l.control(undefined, { authorization: `Bearer ${token}, Bearer ${token}` });
    expect(await codeOf(two.whoAmI({}))).toBe('IDENTITY_AMBIGUOUS');
    const basic = l.control(undefined, { authorization: 'Basic dXNlcjpwYXNz' });
    expect(await codeOf(basic.whoAmI({}))).toBe('AUTHORIZATION_MALFORMED');
    expect(await codeOf(l.control(undefined, { authorization: 'Bearer x.y.z' }).whoAmI({}))).toBe(
      'UNAUTHENTICATED',
    );
    // A site certificate stays refused, with or without a token.
    expect(await codeOf(l.control(l.peer('site-1'), { authorization: `Bearer ${token}` }).whoAmI({}))).toBe(
      'PERMISSION_DENIED',
    );
    const plain = await start();
    const bearer = (secret: string) => plain.control(undefined, { authorization: `Bearer ${secret}` });
    expect(await refusal(bearer(token).listRuns({}))).toMatchObject({
      code: 'OIDC_NOT_CONFIGURED',
      message: 'This service accepts no login tokens (no identity provider is configured)',
    });
    // Every SuperLink keeps service accounts (in its LinkState): a secret it does not know is invalid.
    expect(await codeOf(bearer('pollen_sa_0123456789').listRuns({}))).toBe('SERVICE_ACCOUNT_INVALID');
    // Every refusal is logged with its code and the kind of identity.
    expect(l.logs).toContainEqual(
      expect.objectContaining({
        event: 'control.refused',
        code: 'IDENTITY_AMBIGUOUS',
        identity: 'certificate',
      }),
    );
    expect(plain.logs).toContainEqual(
      expect.objectContaining({ event: 'control.refused', code: 'OIDC_NOT_CONFIGURED', identity: 'bearer' }),
    );
  });

  it('logs a missing right with who was refused; GetLoginDetails answers without any credential', async () => {
    const tokens = await localTokens();
    const oidc = {
      issuer: 'https://idp.example/realms/pollen',
      audience: 'pollen-superlink',
      clientId: 'pollen-cli',
      scopes: ['openid', 'offline_access'],
      algorithms: ['ES256'],
      clockSkewSeconds: 60,
      claims: { roles: ['roles'], roleNames: {}, org: 'org', email: 'email', name: 'name' },
    };
    const l = await start({ control: { tokens: tokens.verifier, oidc } });
    const member = l.control(undefined, {
      authorization: `Bearer ${await tokens.sign('m-1', { roles: ['member'], org: 'Alpha' })}`,
    });
    expect(await refusal(member.startRun({}))).toMatchObject({
      code: 'RIGHT_MISSING',
      connect: 'PermissionDenied',
    });
    expect(l.logs).toContainEqual(
      expect.objectContaining({
        event: 'control.refused',
        code: 'RIGHT_MISSING',
        identity: 'user',
        subject: 'm-1',
        org: 'Alpha',
      }),
    );
    expect(await l.control(undefined).getLoginDetails({})).toMatchObject({
      issuer: oidc.issuer,
      clientId: 'pollen-cli',
      audience: 'pollen-superlink',
      scopes: ['openid', 'offline_access'],
    });
    expect(await (await start()).control(undefined).getLoginDetails({})).toMatchObject({
      issuer: '',
      clientId: '',
    });
  });

  it('lets a lead stop their own runs only, and a project admin any; lists only what an org-scoped right reaches', async () => {
    const tokens = await localTokens();
    const policy = { ...DEFAULT_ACCESS_POLICY, member: { 'run.view': 'org' as const } };
    const l = await start({ control: { tokens: tokens.verifier, policy } });
    const as = async (sub: string, role: Role, org: string) =>
      l.control(undefined, { authorization: `Bearer ${await tokens.sign(sub, { roles: [role], org })}` });
    const lead = await as('lea', 'lead', 'Alpha');
    const other = await as('otto', 'lead', 'Alpha');
    const fab = await uploadBundle(l);
    const mine = (await lead.startRun({ fab })).runId;
    const theirs = (await other.startRun({ fab })).runId;
    const beta = (await (await as('bea', 'lead', 'Beta')).startRun({ fab })).runId;
    expect(await refusal(lead.stopRun({ runId: theirs }))).toMatchObject({
      code: 'WRONG_ORGANISATION',
      message: 'lea may run.stop only on what they created',
    });
    expect((await lead.stopRun({ runId: mine })).run?.reason).toBe('stopped by lea');
    expect((await l.admin().stopRun({ runId: theirs })).run?.subStatus).toBe('stopped');
    const alphaMember = await as('max', 'member', 'Alpha');
    expect((await alphaMember.listRuns({})).runs.map((r) => r.runId).sort()).toEqual([mine, theirs].sort());
    expect(await codeOf(alphaMember.getRunDetails({ runId: beta }))).toBe('WRONG_ORGANISATION');
    expect(await codeOf(alphaMember.getRunDetails({ runId: mine }))).toBe('ok');
    const noOrg = await as('nox', 'member', '');
    expect((await noOrg.listRuns({})).runs).toEqual([]);
    expect((await l.admin().listRuns({})).runs).toHaveLength(3);
  });

  it('registers node keys into the registrant’s organisation; an org admin unregisters only their organisation’s', async () => {
    const l = await start({ nodeAuth: true });
    const alpha = l.control(l.peer('oa@alpha', { type: 'admin', org: 'Alpha', role: 'org_admin' }));
    const beta = l.control(l.peer('ob@beta', { type: 'admin', org: 'Beta', role: 'org_admin' }));
    const lead = l.control(l.peer('lead@alpha', { type: 'admin', org: 'Alpha', role: 'lead' }));
    const { nodeId } = await alpha.registerNode({ publicKey: l.nodeKey().publicKey });
    expect(l.state.getNode(nodeId)?.org).toBe('Alpha');
    expect(await codeOf(lead.registerNode({ publicKey: l.nodeKey().publicKey }))).toBe('RIGHT_MISSING');
    expect(await codeOf(beta.unregisterNode({ nodeId }))).toBe('WRONG_ORGANISATION');
    expect(await codeOf(lead.unregisterNode({ nodeId }))).toBe('RIGHT_MISSING');
    expect(await codeOf(alpha.unregisterNode({ nodeId }))).toBe('ok');
    // An org admin whose certificate names no organisation registers nowhere.
    const orgless = l.control(l.peer('oa@none', { type: 'admin', role: 'org_admin' }));
    expect(await codeOf(orgless.registerNode({ publicKey: l.nodeKey().publicKey }))).toBe(
      'WRONG_ORGANISATION',
    );
  });
});
