import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selfSigned } from '../../test/support/fixtures.js';
import { canonicalAddress, type ProxyRefusal, proxyProtocolFront } from './proxy-listener.js';
import { V2_SIGNATURE } from './proxy-protocol.js';

/**
 * An HTTPS server that answers with the peer address it sees, behind the PROXY protocol front:
 * 127.0.0.1 is the configured proxy, 127.0.0.2 (also loopback on Linux) an ordinary client.
 */
let dir: string;
let server: https.Server;
let front: net.Server;
let port: number;
const refusals: ProxyRefusal[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-proxy-'));
  selfSigned(join(dir, 'key.pem'), join(dir, 'cert.pem'), '/CN=127.0.0.1', 1);
  server = https.createServer(
    { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
    (req, res) => res.end(`${req.socket.remoteAddress} ${req.socket.remotePort}`),
  );
  front = proxyProtocolFront(server, {
    from: ['127.0.0.1'],
    headerTimeoutMs: 200,
    onRefused: (r) => refusals.push(r),
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  port = (front.address() as net.AddressInfo).port;
});

afterAll(async () => {
  front.close();
  server.closeAllConnections();
  rmSync(dir, { recursive: true, force: true });
});

/** Connect from `from`, send `preface` (in the pieces given), then speak HTTPS: the body it gets. */
async function ask(from: string, ...preface: Buffer[]): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  for (const piece of preface) {
    socket.write(piece);
    await new Promise((r) => setTimeout(r, 10)); // separate packets: the header arrives split
  }
  return new Promise<string>((resolve, reject) => {
    // A refused connection is closed by the server, maybe before TLS starts.
    socket.once('close', () => reject(new Error('connection closed')));
    if (socket.destroyed) return reject(new Error('connection closed'));
    const req = https.request(
      {
        host: '127.0.0.1',
        path: '/',
        createConnection: () => tls.connect({ socket, rejectUnauthorized: false }),
      },
      (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The next refusal logged (each refused connection logs one). */
async function nextRefusal(count: number): Promise<ProxyRefusal> {
  for (let i = 0; i < 100 && refusals.length <= count; i++) await new Promise((r) => setTimeout(r, 10));
  return refusals[count] as ProxyRefusal;
}

const v1 = (src: string, sport: number) => Buffer.from(`PROXY TCP4 ${src} 127.0.0.1 ${sport} 443\r\n`);

describe('the PROXY protocol front', () => {
  it('makes the header’s source address the peer address of a configured proxy’s connection', async () => {
    expect(await ask('127.0.0.1', v1('198.51.100.23', 40123))).toBe('198.51.100.23 40123');
  });

  it('reads a header split across packets, and a version 2 header', async () => {
    const line = v1('198.51.100.24', 1000);
    expect(await ask('127.0.0.1', line.subarray(0, 9), line.subarray(9, 30), line.subarray(30))).toBe(
      '198.51.100.24 1000',
    );
    const body = Buffer.from([203, 0, 113, 9, 127, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb]);
    const header = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, 12]), body]);
    expect(await ask('127.0.0.1', header.subarray(0, 5), header.subarray(5))).toBe('203.0.113.9 40000');
  });

  it('keeps the proxy’s own address for a LOCAL header (the proxy’s health check)', async () => {
    const local = Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0, 0])]);
    expect(await ask('127.0.0.1', local)).toMatch(/^127\.0\.0\.1 /);
  });

  it('serves a connection without a header from an address that is not a proxy, as it came', async () => {
    expect(await ask('127.0.0.2')).toMatch(/^127\.0\.0\.2 /);
  });

  it('refuses a PROXY header from an address that is not a configured proxy (never believed)', async () => {
    const n = refusals.length;
    await expect(ask('127.0.0.2', v1('10.9.9.9', 1))).rejects.toThrow();
    expect(await nextRefusal(n)).toEqual({
      address: '127.0.0.2',
      reason: 'a PROXY header from an address that is not a configured proxy (--proxy-protocol-from)',
    });
  });

  it('refuses a configured proxy’s connection without a header, or with a malformed one', async () => {
    let n = refusals.length;
    await expect(ask('127.0.0.1')).rejects.toThrow();
    expect((await nextRefusal(n)).reason).toBe(
      'the connection does not start with a PROXY header from a configured proxy',
    );
    n = refusals.length;
    await expect(ask('127.0.0.1', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'))).rejects.toThrow();
    expect((await nextRefusal(n)).reason).toMatch(
      /^malformed PROXY v1 header "PROXY TCP4 1.2.3.4 5.6.7.8 1"/,
    );
    n = refusals.length;
    await expect(ask('127.0.0.1', Buffer.from(`PROXY TCP4 ${'9'.repeat(200)}`))).rejects.toThrow();
    expect((await nextRefusal(n)).reason).toMatch(/longer than 107 bytes/);
  });

  it('refuses a header that does not complete in time (slowloris)', async () => {
    const n = refusals.length;
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
    socket.write('PROXY TCP4 1.2.');
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    await closed;
    expect(await nextRefusal(n)).toEqual({
      address: '127.0.0.1',
      reason: 'no complete PROXY header within 200 ms',
    });
  });
});

describe('canonicalAddress', () => {
  it('spells an IPv4-mapped peer and an expanded IPv6 address one way each', () => {
    expect(canonicalAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(canonicalAddress('2001:db8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(canonicalAddress('10.0.0.1')).toBe('10.0.0.1');
  });
});
