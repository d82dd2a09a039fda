/**
 * What `pollen doctor` observes: a TCP connection, a TLS handshake's peer certificate, a server's
 * `Date`, a file written, free space. Each probe returns what it saw (or the error), never throws.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { statfsSync, unlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { type DetailedPeerCertificate, type PeerCertificate, connect as tlsConnect } from 'node:tls';

const TIMEOUT_MS = 5_000;

/** A TCP connection to host:port, closed at once. */
export function probePort(host: string, port: number, timeoutMs = TIMEOUT_MS): Promise<Error | null> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    socket.once('connect', () => {
      socket.destroy();
      resolve(null);
    });
    socket.once('error', (e) => resolve(e));
  });
}

export interface TlsPeer {
  /** The leaf as checkServerIdentity reads it. */
  peer: PeerCertificate;
  /** The certificates the server sent, PEM, leaf first. */
  pem: string;
}

/** The certificates a TLS server presents (not verified here: the findings check them). */
export function probeTlsPeer(
  host: string,
  port: number,
  client?: { cert: string; key: string },
  timeoutMs = TIMEOUT_MS,
): Promise<TlsPeer | Error> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host,
      port,
      servername: /^[\d.]+$|:/.test(host) ? undefined : host,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2', 'http/1.1'],
      ...client,
    });
    socket.setTimeout(timeoutMs, () =>
      socket.destroy(new Error(`no TLS handshake within ${timeoutMs / 1000} s`)),
    );
    socket.once('secureConnect', () => {
      const peer = socket.getPeerCertificate(true);
      const pem: string[] = [];
      const seen = new Set<string>();
      for (
        let c: DetailedPeerCertificate | undefined = peer;
        c?.raw && !seen.has(c.fingerprint256);
        c = c.issuerCertificate
      ) {
        seen.add(c.fingerprint256);
        pem.push(new X509Certificate(c.raw).toString());
      }
      socket.destroy();
      resolve({ peer, pem: pem.join('') });
    });
    socket.once('error', (e) => resolve(e));
  });
}

/** An HTTPS GET of `url` trusting `ca`: its status, `Date` and body (any path answers with a Date). */
export function probeHttps(
  url: string,
  ca: string,
  timeoutMs = TIMEOUT_MS,
): Promise<{ status: number; date?: Date; body: Buffer } | Error> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', ca, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        const date = res.headers.date ? new Date(res.headers.date) : undefined;
        resolve({
          status: res.statusCode ?? 0,
          ...(date && !Number.isNaN(date.getTime()) && { date }),
          body: Buffer.concat(chunks),
        });
      });
      res.once('error', (e) => resolve(e));
    });
    req.once('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.once('error', (e) => resolve(e));
    req.end();
  });
}

/** Write and remove a small file in `dir`: what a store needs before anything else. */
export function probeWritable(dir: string): Error | null {
  const file = join(dir, `.pollen-doctor-${randomBytes(4).toString('hex')}`);
  try {
    writeFileSync(file, 'x', { flag: 'wx' });
    unlinkSync(file);
    return null;
  } catch (e) {
    return e as Error;
  }
}

/** Bytes free to this user on the file system of `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}
