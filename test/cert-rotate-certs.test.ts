import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createSiteCertificate } from '../src/pki/site.js';
import { type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { ensureBuilt, pollenInProcess, tempDir } from './support/cli.js';
import { makePki, type Pki, startSuperLink, startSuperNode, stopAll } from './support/federation.js';

// The Certificate Service's and the SuperLink's own certificates are rotated while they serve:
// new connections get the new certificate, peers that trust the CA never notice, nothing restarts.

const t = tempDir('pollen-rotate-certs-');
afterAll(async () => {
  await stopAll();
  t.cleanup();
});

/** The serial of the certificate a TLS server presents to a new connection (only its serial is looked at). */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const serial = socket.getPeerCertificate().serialNumber.toLowerCase();
      socket.destroy();
      resolve(serial);
    });
    socket.once('error', reject);
  });
}

describe('pollen cert rotate cert-service', () => {
  let cs: LiveCertService;
  beforeAll(async () => {
    cs = await startLiveCertService(join(t.dir, 'cs'), {
      name: 'Rotate Certs',
      apiKey: 'pollen_rotate_certs_key_0123456789abcdefghijklmnop',
      policy: testPolicy('rotate-certs', ['{ name: "all", match: {}, action: approve }']),
      hostnames: ['localhost', '127.0.0.1'],
      reloadCheckMs: 20,
    });
  });
  afterAll(() => cs.close());

  it('re-issues the certificate; the running service serves it while enrollments go on', async () => {
    const before = await servedSerial(cs.svc.port);
    expect((await cs.enroll('site-before')).status).toBe(200);
    const r = await pollenInProcess([
      'cert',
      'rotate',
      'cert-service',
      '-c',
      cs.caDir,
      '-w',
      join(t.dir, 'cs', 'ws'),
      '--json',
    ]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.previousSerial).toBe(before);
    expect(doc.serial).not.toBe(before);
    // The connection the client keeps open, and new ones with the new certificate, both work.
    expect((await cs.enroll('site-during')).status).toBe(200);
    await vi.waitFor(async () => expect(await servedSerial(cs.svc.port)).toBe(doc.serial), {
      timeout: 5_000,
      interval: 20,
    });
    expect((await cs.enroll('site-after')).status).toBe(200);
  });

  it('refuses a folder that is not a service workspace', async () => {
    const r = await pollenInProcess([
      'cert',
      'rotate',
      'cert-service',
      '-c',
      cs.caDir,
      '-w',
      t.dir,
      '--json',
    ]);
    expect(r.code).not.toBe(0);
    expect(JSON.parse(r.stdout).error.code).toBe('FILE_NOT_FOUND');
  });
});

describe('a SuperLink process whose certificate is rotated', () => {
  let pki: Pki;
  beforeAll(async () => {
    ensureBuilt('cli/main.js');
    pki = await makePki(join(t.dir, 'pki'), 'rotate-link');
  });

  it('presents the new certificate to new connections; a connected SuperNode keeps running, a new one connects', async () => {
    const link = await startSuperLink({
      stateDir: join(t.dir, 'link'),
      pki,
      env: { POLLEN_TLS_RELOAD_CHECK_MS: '50' },
    });
    const node1 = await startSuperNode({
      fleetUrl: link.fleetUrl,
      cert: await pki.cert('site-1'),
      workDir: join(t.dir, 'n1'),
      partitionId: 0,
    });
    const fleetPort = link.ports.fleet;
    expect(await servedSerial(fleetPort)).toBe(pki.server.serial.toLowerCase());
    // What `pollen cert site --force` does in the manual workflow: new files in place.
    const renewed = await createSiteCertificate(pki.ca, {
      name: 'superlink',
      type: 'server',
      outDir: join(pki.dir, 'certs', 'server', 'superlink'),
      validityDays: 2,
      hosts: ['127.0.0.1', 'localhost'],
      force: true,
    });
    await vi.waitFor(async () => expect(await servedSerial(fleetPort)).toBe(renewed.serial.toLowerCase()), {
      timeout: 10_000,
      interval: 50,
    });
    await vi.waitFor(async () =>
      expect(await servedSerial(link.ports.control)).toBe(renewed.serial.toLowerCase()),
    );
    const node2 = await startSuperNode({
      fleetUrl: link.fleetUrl,
      cert: await pki.cert('site-2'),
      workDir: join(t.dir, 'n2'),
      partitionId: 1,
    });
    expect(node2.nodeId).not.toBe('');
    expect(node1.alive()).toBe(true);
    expect(link.alive()).toBe(true);
    expect(link.stderr()).toContain('took up a rotated TLS certificate');
  }, 60_000);
});
