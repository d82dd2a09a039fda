import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePki, type Pki, tempDir } from '../../../test/support/federation.js';
import { createCrl, readSignedCrl } from '../../pki/crl.js';
import * as f from './findings.js';
import { probePort, probeWritable } from './probes.js';

const DAY = 86_400_000;

describe('pollen doctor findings', () => {
  const tmp = tempDir('pollen-doctor-');
  let pki: Pki;
  let serverPem: string;
  let server: X509Certificate;
  beforeAll(async () => {
    pki = await makePki(join(tmp.dir, 'pki'));
    serverPem = readFileSync(pki.server.cert, 'utf8');
    server = new X509Certificate(serverPem);
  });
  afterAll(() => tmp.cleanup());

  it('passes a certificate that chains to the root and fails one from another CA', async () => {
    const now = new Date();
    expect(f.chainFinding('c', 'it', serverPem, pki.ca.chainPem, pki.ca.rootPem, now).status).toBe('ok');
    const other = await makePki(join(tmp.dir, 'other'), 'otherproject');
    const foreign = f.chainFinding('c', 'it', serverPem, '', other.ca.rootPem, now);
    expect(foreign).toMatchObject({
      status: 'fail',
      message: expect.stringContaining('does not chain'),
      fix: expect.any(String),
    });
  });

  it('fails an expired or not-yet-valid certificate and warns within 7 days (these certificates live 2)', () => {
    const to = new Date(server.validTo).getTime();
    expect(f.expiryFinding('e', 'it', server, new Date(to + 1000))).toMatchObject({
      status: 'fail',
      message: expect.stringContaining('expired'),
    });
    expect(
      f.expiryFinding('e', 'it', server, new Date(new Date(server.validFrom).getTime() - DAY)),
    ).toMatchObject({
      status: 'fail',
      fix: expect.stringContaining('clock'),
    });
    expect(f.expiryFinding('e', 'it', server, new Date(to - 2 * DAY)).status).toBe('warn');
  });

  it('fails a server certificate that does not name the address used', () => {
    const peer = server.toLegacyObject();
    expect(f.serverNameFinding('n', '127.0.0.1', peer).status).toBe('ok');
    expect(f.serverNameFinding('n', 'links.example.org', peer)).toMatchObject({
      status: 'fail',
      message: expect.stringContaining('links.example.org'),
    });
  });

  it('fails a revoked certificate, warns on a stale list, on no list and on a list without its issuer', async () => {
    const issuers = [new X509Certificate(pki.ca.rootPem), new X509Certificate(pki.ca.intermediatePem)];
    const now = new Date();
    const revoked = await readSignedCrl(
      await createCrl(pki.ca.issuer, [{ serial: server.serialNumber, revokedAt: now }], now),
      issuers,
      'CRL',
    );
    expect(f.revocationFinding('r', 'it', server, revoked, now)).toMatchObject({
      status: 'fail',
      message: expect.stringContaining('revoked'),
    });
    const clean = await readSignedCrl(
      await createCrl(pki.ca.issuer, [], new Date(now.getTime() - 3 * DAY)),
      issuers,
      'CRL',
    );
    expect(f.revocationFinding('r', 'it', server, clean, now)).toMatchObject({
      status: 'warn',
      message: expect.stringContaining('stale'),
    });
    expect(f.revocationFinding('r', 'it', server, clean, new Date(now.getTime() - 3 * DAY)).status).toBe(
      'ok',
    );
    expect(f.revocationFinding('r', 'it', server, new Error('ECONNREFUSED'), now).status).toBe('warn');
    expect(f.revocationFinding('r', 'it', server, 'missing', now)).toMatchObject({
      status: 'warn',
      message: expect.stringContaining('no CRL of the intermediate that issued it'),
      fix: expect.stringContaining("retired intermediate's key"),
    });
  });

  it('judges the clock against the server: ok within 5 s, warn past it, fail past a minute', () => {
    const server = new Date('2026-03-01T12:00:00Z');
    const at = (ms: number) => new Date(server.getTime() + ms);
    expect(f.clockFinding('k', 'S', server, at(1_000)).status).toBe('ok');
    expect(f.clockFinding('k', 'S', server, at(-20_000))).toMatchObject({
      status: 'warn',
      message: expect.stringContaining('20 s behind S'),
    });
    expect(f.clockFinding('k', 'S', server, at(90_000))).toMatchObject({
      status: 'fail',
      fix: expect.stringContaining('timedatectl'),
    });
  });

  it('fails an unreachable port and an unwritable folder; judges disk space', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    const refused = await probePort('127.0.0.1', closed);
    expect(f.portFinding('p', 'The Fleet API', `127.0.0.1:${closed}`, refused)).toMatchObject({
      status: 'fail',
      message: expect.stringContaining('ECONNREFUSED'),
    });
    expect(f.writableFinding('w', tmp.dir, probeWritable(tmp.dir)).status).toBe('ok');
    const notADir = pki.server.cert;
    expect(f.writableFinding('w', notADir, probeWritable(notADir)).status).toBe('fail');
    expect(f.diskFinding('d', '/', 50 << 20).status).toBe('fail');
    expect(f.diskFinding('d', '/', 500 << 20).status).toBe('warn');
    expect(f.diskFinding('d', '/', 5 * 2 ** 30).status).toBe('ok');
  });
});
