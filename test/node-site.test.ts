import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SuperLink } from '../src/superlink/superlink.js';
import type { SessionHolder } from '../src/supernode/fleet-auth.js';
import {
  type CertFiles,
  FEDERATION,
  makePki,
  type Pki,
  pollen,
  sshKeygen,
  tempDir,
  tlsOf,
  writeFederationConfig,
} from './support/federation.js';
import {
  ACTIVATE_REQUEST,
  errorCode,
  fleetWithSession,
  registerKeyFile,
  replayActivation,
  signActivation,
  signerOf,
} from './support/fleet-client.js';
import { startLocalSuperLink } from './support/inproc.js';

const t = tempDir('pollen-site-');
let pki: Pki;
let link: SuperLink;
let site1: CertFiles;
let site2: CertFiles;
let config: string;
const logLines: Record<string, unknown>[] = [];
const log = pino({ level: 'info' }, { write: (s: string) => logLines.push(JSON.parse(s)) });

beforeAll(async () => {
  pki = await makePki(join(t.dir, 'pki'));
  [site1, site2] = [await pki.cert('site-1'), await pki.cert('site-2')];
  link = await startLocalSuperLink({
    stateDir: join(t.dir, 'superlink'),
    tls: tlsOf(pki.server),
    project: 'fedtest',
    nodeAuth: true,
    log,
  });
  config = writeFederationConfig(join(t.dir, 'config.toml'), link.controlUrl, pki.admin);
}, 30_000);

afterAll(async () => {
  await link?.close();
  t.cleanup();
});

let keys = 0;
/** A new ssh-keygen node key, registered (with `site` when given); its file and node id. */
async function registeredKey(site?: string): Promise<{ file: string; nodeId: string }> {
  const file = sshKeygen(join(t.dir, `key-${keys++}`), 256, 'node');
  const nodeId = await registerKeyFile(link.state, file, { name: 'n', site, by: 'root' });
  return { file, nodeId };
}

const activate = (cert: CertFiles, keyFile: string) =>
  replayActivation(link.fleetUrl, cert, signActivation(signerOf(keyFile)));

const mismatches = (nodeId: string) =>
  logLines.filter((l) => l.event === 'node.site.mismatch' && l.nodeId === nodeId);

describe('a registered node key under another site', () => {
  it('is refused when its site was named at registration, and the named site still gets in', async () => {
    const { file, nodeId } = await registeredKey('site-1');
    expect(await activate(site2, file)).toEqual({ ok: false, code: 'NODE_IDENTITY_MISMATCH' });
    expect(mismatches(nodeId)).toEqual([
      expect.objectContaining({
        site: 'site-1',
        presented: 'site-2',
        method: '/pollen.v1.Fleet/ActivateNode',
      }),
    ]);
    expect(await activate(site1, file)).toMatchObject({ ok: true });
    expect(await activate(site2, file)).toEqual({ ok: false, code: 'NODE_IDENTITY_MISMATCH' });
    expect(link.state.getNode(nodeId)).toMatchObject({ site: 'site-1', siteBoundBy: 'admin:root' });
  }, 30_000);

  it('is refused once its first activation bound it to a site, which is logged and kept', async () => {
    const { file, nodeId } = await registeredKey();
    expect(await activate(site1, file)).toMatchObject({ ok: true });
    expect(await activate(site2, file)).toEqual({ ok: false, code: 'NODE_IDENTITY_MISMATCH' });
    expect(await activate(site1, file)).toMatchObject({ ok: true });
    expect(logLines).toContainEqual(
      expect.objectContaining({ event: 'node.site.bound', nodeId, site: 'site-1', by: 'first-use' }),
    );
    expect(mismatches(nodeId)).toEqual([expect.objectContaining({ site: 'site-1', presented: 'site-2' })]);
    expect(link.state.getNode(nodeId)).toMatchObject({ site: 'site-1', siteBoundBy: 'first-use' });
  }, 30_000);

  it('is matched against the certificate name as issued, also where the identity URI encodes it', async () => {
    const lab = await pki.cert('lab+1@north');
    const { file, nodeId } = await registeredKey('lab+1@north');
    expect(await activate(lab, file)).toMatchObject({ ok: true });
    expect(await activate(site1, file)).toEqual({ ok: false, code: 'NODE_IDENTITY_MISMATCH' });
    const firstUse = await registeredKey();
    expect(await activate(lab, firstUse.file)).toMatchObject({ ok: true });
    expect(link.state.getNode(firstUse.nodeId)?.site).toBe('lab+1@north');
    expect(mismatches(nodeId)).toEqual([
      expect.objectContaining({ site: 'lab+1@north', presented: 'site-1' }),
    ]);
  }, 30_000);

  it('cannot use a session another site opened: not on the fast path, the Connect path or bulk chunks', async () => {
    const { file, nodeId } = await registeredKey('site-1');
    const signer = signerOf(file);
    const holder: SessionHolder = {};
    const own = fleetWithSession(link.fleetUrl, site1, signer, holder);
    const other = fleetWithSession(link.fleetUrl, site2, signer, holder);
    try {
      holder.session = (await own.fleet.activateNode(ACTIVATE_REQUEST)).session;
      expect(holder.session).toBeDefined();
      expect(await own.fleet.heartbeat({ heartbeatIntervalMs: 10_000 })).toMatchObject({ known: true });

      const chunk = 'ab'.repeat(32);
      expect(await errorCode(other.fleet.heartbeat({ heartbeatIntervalMs: 10_000 }))).toBe(
        'NODE_IDENTITY_MISMATCH',
      );
      expect(await errorCode(other.fleet.getRun({ runId: 'none' }))).toBe('NODE_IDENTITY_MISMATCH');
      expect(await errorCode(other.channel.bulk!.get(chunk))).toBe('NODE_IDENTITY_MISMATCH');
      expect(mismatches(nodeId).map((l) => l.method)).toEqual([
        '/pollen.v1.Fleet/Heartbeat',
        '/pollen.v1.Fleet/GetRun',
        `GET /pollen.v1.chunks/${chunk}`,
      ]);
      // The session still works where it was opened.
      expect(await errorCode(own.fleet.getRun({ runId: 'none' }))).toBe('RUN_NOT_FOUND');
      expect(await errorCode(own.channel.bulk!.get(chunk))).toBe('CHUNK_MISSING');
    } finally {
      own.close();
      other.close();
    }
  }, 30_000);
});

describe('pollen supernode register --site and supernode list', () => {
  it('bind a key to the named site and show each binding, in text and --json', async () => {
    const file = sshKeygen(join(t.dir, 'cli-key'), 384, 'cli-node');
    const bad = await pollen(
      ['supernode', 'register', `${file}.pub`, FEDERATION, '--site', 'no spaces', '--json'],
      {
        config,
      },
    );
    expect(bad.code, bad.stderr).toBe(2);
    expect(bad.json().error.code).toBe('INVALID_ARGUMENT');

    const reg = await pollen(
      ['supernode', 'register', `${file}.pub`, FEDERATION, '--site', 'site-2', '--json'],
      {
        config,
      },
    );
    expect(reg.code, reg.stderr).toBe(0);
    const { nodeId } = reg.json();
    expect(reg.json()).toMatchObject({ site: 'site-2', superlink: FEDERATION, federation: 'default' });
    expect(await activate(site1, file)).toEqual({ ok: false, code: 'NODE_IDENTITY_MISMATCH' });
    expect(await activate(site2, file)).toMatchObject({ ok: true });
    const firstUse = await registeredKey();
    await activate(site1, firstUse.file);
    const unbound = await registeredKey();

    const list = await pollen(['supernode', 'list', FEDERATION, '--json'], { config });
    expect(list.code, list.stderr).toBe(0);
    const nodes = Object.fromEntries(
      list.json<{ nodes: { nodeId: string }[] }>().nodes.map((n) => [n.nodeId, n]),
    );
    // The admin as the Control API names callers elsewhere (runs' createdBy): the URI's spelling.
    expect(nodes[nodeId]).toMatchObject({ site: 'site-2', siteBoundBy: 'admin:admin@test' });
    expect(nodes[firstUse.nodeId]).toMatchObject({ site: 'site-1', siteBoundBy: 'first-use' });
    expect(nodes[unbound.nodeId]).toMatchObject({ site: null, siteBoundBy: null, siteBoundAt: null });

    const text = (await pollen(['supernode', 'list', FEDERATION], { config })).stdout;
    const line = (id: string) => text.split('\n').find((l) => l.includes(id)) ?? '';
    expect(line(nodeId)).toContain('site site-2 (named by admin@test)');
    expect(line(firstUse.nodeId)).toContain('site site-1 (first use)');
    expect(line(unbound.nodeId)).toContain('site (bound on first use)');
  }, 60_000);
});
