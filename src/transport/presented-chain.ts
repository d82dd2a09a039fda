import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import tls from 'node:tls';

/**
 * The certificates a TLS server presents, leaf first, read over a connection that trusts
 * nothing: for pinning a root by its fingerprint before anything is sent (enrollment, `pollen
 * login --root-fingerprint`). Never trust what this returns without checking it against a pin.
 * Fails with the socket's error, or one named `TimeoutError` after `timeoutMs`.
 */
export function presentedChain(
  host: string,
  port: number,
  o: { timeoutMs: number; alpn: 'h2' | 'http/1.1' },
): Promise<X509Certificate[]> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      rejectUnauthorized: false,
      ALPNProtocols: [o.alpn],
    });
    socket.setTimeout(o.timeoutMs, () =>
      socket.destroy(Object.assign(new Error('timed out'), { name: 'TimeoutError' })),
    );
    socket.once('secureConnect', () => {
      const certs: X509Certificate[] = [];
      const seen = new Set<string>();
      let c = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
      while (c?.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        certs.push(new X509Certificate(c.raw));
        c = c.issuerCertificate;
      }
      socket.destroy();
      resolve(certs);
    });
    socket.once('error', reject);
  });
}
