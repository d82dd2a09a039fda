/**
 * A captured signed ActivateNode stays refused (NODE_AUTH_REPLAY) inside its window: after the
 * SuperLink restarts on the same state, and when two SuperLinks share one PostgreSQL and both
 * get it at once. Real SuperLinks in this process, mutual TLS on 127.0.0.1, ssh-keygen keys.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { SuperLink } from '../src/superlink/superlink.js';
import type { RequestSigner } from '../src/transport/node-request-auth.js';
import { type CertFiles, makePki, type Pki, sshKeygen, tempDir, tlsOf } from './support/federation.js';
import { registerKeyFile, replayActivation, signActivation, signerOf } from './support/fleet-client.js';
import { startLocalSuperLink } from './support/inproc.js';
import { createTestDatabase } from './support/postgres.js';

const t = tempDir('pollen-replay-');
let pki: Pki;
let site1: CertFiles;
let keyFile: string;
let signer: RequestSigner;
const logLines: Record<string, unknown>[] = [];
const log = pino({ level: 'info' }, { write: (s: string) => logLines.push(JSON.parse(s)) });
const links: SuperLink[] = [];

beforeAll(async () => {
  pki = await makePki(join(t.dir, 'pki'));
  site1 = await pki.cert('site-1');
  keyFile = sshKeygen(join(t.dir, 'node-key'), 256, 'site-1');
  signer = signerOf(keyFile);
}, 30_000);

afterAll(async () => {
  await Promise.all(links.map((l) => l.close()));
  t.cleanup();
});

async function link(o: { stateDir: string; database?: string }): Promise<SuperLink> {
  const l = await startLocalSuperLink({
    ...o,
    tls: tlsOf(pki.server),
    project: 'fedtest',
    nodeAuth: true,
    log,
  });
  links.push(l);
  return l;
}

async function close(l: SuperLink): Promise<void> {
  links.splice(links.indexOf(l), 1);
  await l.close();
}

const register = (l: SuperLink): Promise<string> => registerKeyFile(l.state, keyFile, { name: 'site-1' });

describe('a captured signed ActivateNode', () => {
  it('is refused after the SuperLink restarts on the same state, inside its window', async () => {
    const stateDir = join(t.dir, 'restart');
    const before = await link({ stateDir });
    const nodeId = await register(before);
    const captured = signActivation(signer);
    expect(await replayActivation(before.fleetUrl, site1, captured)).toMatchObject({ ok: true });
    expect(await replayActivation(before.fleetUrl, site1, captured)).toEqual({
      ok: false,
      code: 'NODE_AUTH_REPLAY',
    });
    await close(before);

    const after = await link({ stateDir });
    const again = await replayActivation(after.fleetUrl, site1, captured);
    expect(again).toEqual({ ok: false, code: 'NODE_AUTH_REPLAY' });
    expect(logLines).toContainEqual(
      expect.objectContaining({ event: 'node.auth.replay', nodeId, presented: 'site-1' }),
    );
    // The node itself is not locked out: a freshly signed request opens a session.
    expect(await replayActivation(after.fleetUrl, site1, signActivation(signer))).toMatchObject({ ok: true });
    await close(after);
  }, 60_000);

  it('opens one session when two SuperLinks sharing one PostgreSQL get it at the same moment', async () => {
    const database = await createTestDatabase(inject('postgresUrl'), `t_${randomUUID().replaceAll('-', '')}`);
    const one = await link({ stateDir: join(t.dir, 'pg-one'), database });
    await register(one);
    const two = await link({ stateDir: join(t.dir, 'pg-two'), database }); // loads the registration
    for (let i = 0; i < 10; i++) {
      const captured = signActivation(signer);
      const results = await Promise.all([
        replayActivation(one.fleetUrl, site1, captured),
        replayActivation(two.fleetUrl, site1, captured),
      ]);
      expect(
        results.filter((r) => r.ok),
        `request ${i}`,
      ).toHaveLength(1);
      expect(results.find((r) => !r.ok)).toEqual({ ok: false, code: 'NODE_AUTH_REPLAY' });
    }
    await Promise.all([close(one), close(two)]);
  }, 60_000);
});
