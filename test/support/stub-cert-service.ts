import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { decodeToken } from '../../src/enrollment/token.js';
import type { LoadedCa } from '../../src/pki/ca.js';
import { createCrl } from '../../src/pki/crl.js';
import { checkCsr } from '../../src/pki/csr.js';
import { describeKey } from '../../src/pki/keys.js';
import { type CertType, issueSiteCertificate } from '../../src/pki/profiles.js';

// ---------------------------------------------------------------------------------------------
// A stand-in Certificate Service: real TLS on 127.0.0.1, a certificate from a test CA, counters.

export interface StubOptions {
  /** The CA whose certificate the server presents (default: the project CA). */
  tlsCa?: LoadedCa;
  /** The CA /v1/ca answers with (default: tlsCa). */
  caEndpoint?: LoadedCa;
  /** Put the root in the presented chain. */
  presentRoot?: boolean;
  mode?: 'issue' | 'pending' | 'reject';
  /** Answer 503 UNAVAILABLE (or `failWith`) to the first N enroll requests. */
  failFirst?: number;
  failWith?: { status: number; code: string };
  /** Issue the certificate for another key than the CSR's. */
  wrongKey?: boolean;
  validityMs?: number;
  /** The clock certificates are issued by (default: real time). */
  clock?: () => Date;
  /**
   * What the server's own certificate is: 'service' (default) carries the Certificate Service
   * identity; 'server' is a plain server certificate of the same CA (any participant may hold
   * one); 'swap' presents the service certificate on the first connection (the pin) and a plain
   * server certificate on every later one (a participant that took over the address).
   */
  identity?: 'service' | 'server' | 'swap';
  /** Answer GET /v1/crl with a CRL (signed by the project intermediate) listing these serials. */
  revoked?: string[];
  /** Refuse renewals with CERT_REVOKED (as the real service does for a revoked certificate). */
  renewRevoked?: boolean;
}

interface StubRequest {
  spki: Buffer;
  name: string;
  type: CertType;
  status: 'pending' | 'approved' | 'rejected';
  reason?: string;
}

export class StubService {
  readonly counts = { enroll: 0, poll: 0, ca: 0, renew: 0, crl: 0, total: 0 };
  readonly proofs = { valid: 0, invalid: 0 };
  readonly requests = new Map<string, StubRequest>();
  readonly renewPeers: string[] = [];
  private server!: https.Server;
  url = '';

  constructor(
    readonly ca: LoadedCa,
    readonly o: StubOptions = {},
  ) {}

  async start(): Promise<this> {
    const tlsCa = this.o.tlsCa ?? this.ca;
    const credentials = (service: boolean) => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const leaf = issueSiteCertificate(
        tlsCa.issuer,
        publicKey.export({ type: 'spki', format: 'der' }),
        describeKey(publicKey),
        {
          name: 'cert-service',
          type: 'server',
          project: tlsCa.meta.name,
          hosts: ['localhost', '127.0.0.1'],
          service,
        },
        86_400_000,
      );
      return {
        key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
        cert: `${leaf.pem}${tlsCa.intermediatePem}\n${this.o.presentRoot ? `${tlsCa.rootPem}\n` : ''}`,
        ca: [this.ca.rootPem, this.ca.intermediatePem],
      };
    };
    const identity = this.o.identity ?? 'service';
    this.server = https.createServer(
      { ...credentials(identity !== 'server'), requestCert: true, rejectUnauthorized: false },
      (req, res) => void this.handle(req, res),
    );
    if (identity === 'swap') {
      // Runs after the TLS listener made this connection's socket: only later connections change.
      const impostor = credentials(false);
      this.server.once('connection', () => this.server.setSecureContext(impostor));
    }
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  approve(id: string) {
    this.requests.get(id)!.status = 'approved';
  }

  reject(id: string, reason: string) {
    Object.assign(this.requests.get(id)!, { status: 'rejected', reason });
  }

  private issue(r: { spki: Buffer; name: string; type: CertType }) {
    let spki = r.spki;
    if (this.o.wrongKey)
      spki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
        type: 'spki',
        format: 'der',
      });
    const issued = issueSiteCertificate(
      this.ca.issuer,
      spki,
      describeKey(createPublicKey({ key: spki, format: 'der', type: 'spki' })),
      { name: r.name, type: r.type, project: this.ca.meta.name },
      this.o.validityMs ?? 30 * 86_400_000,
      this.o.clock?.() ?? new Date(),
    );
    return {
      status: 'issued',
      name: r.name,
      type: r.type,
      role: null,
      certificate: issued.pem,
      chain: this.ca.chainPem,
      serial: issued.serial,
      fingerprint: issued.fingerprint,
      notAfter: issued.notAfter.toISOString(),
    };
  }

  private async handle(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) {
    this.counts.total++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined;
    const send = (status: number, json: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
    };
    const fail = (status: number, code: string, message: string, extra: object = {}) =>
      send(status, { error: { code, message, hint: 'stub', ...extra } });
    const url = req.url ?? '';
    if (req.method === 'GET' && url === '/v1/ca') {
      this.counts.ca++;
      const c = this.o.caEndpoint ?? this.o.tlsCa ?? this.ca;
      return send(200, {
        root: c.rootPem,
        intermediate: c.intermediatePem,
        chain: c.chainPem,
        rootFingerprint: c.rootFingerprint,
      });
    }
    if (req.method === 'GET' && url === '/v1/crl' && this.o.revoked) {
      this.counts.crl++;
      const crl = await createCrl(
        this.ca.issuer,
        this.o.revoked.map((serial) => ({ serial, revokedAt: new Date('2025-01-02T03:04:05Z') })),
      );
      res.writeHead(200, { 'content-type': 'application/x-pem-file' });
      return res.end(crl);
    }
    if (req.method === 'POST' && url === '/v1/enroll') {
      this.counts.enroll++;
      if (this.counts.enroll <= (this.o.failFirst ?? 0))
        return fail(this.o.failWith?.status ?? 503, this.o.failWith?.code ?? 'UNAVAILABLE', 'busy');
      const claims = decodeToken(body.token);
      const csr = checkCsr(body.csr);
      const type: CertType = claims.pollen.subject_type === 'user' ? 'admin' : claims.pollen.subject_type;
      const r = { spki: csr.spki, name: csr.commonName ?? '', type };
      if (this.o.mode === 'reject')
        return fail(403, 'ENROLLMENT_REJECTED', 'Enrollment refused by policy: no');
      if (this.o.mode === 'pending') {
        const id = `req_${this.requests.size + 1}`;
        this.requests.set(id, { ...r, status: 'pending' });
        return send(202, {
          status: 'pending',
          requestId: id,
          pollUrl: `/v1/requests/${id}/status`,
          retryAfter: 0,
        });
      }
      return send(200, this.issue(r));
    }
    const poll = /^\/v1\/requests\/([^/]+)\/status$/.exec(url);
    if (req.method === 'POST' && poll) {
      this.counts.poll++;
      const r = this.requests.get(decodeURIComponent(poll[1]!));
      if (!r) return fail(404, 'REQUEST_NOT_FOUND', 'no such request');
      const message = Buffer.from(`pollen-poll:v1:${poll[1]}:${body.timestamp}`);
      const ok = verify(
        'sha256',
        message,
        { key: createPublicKey({ key: r.spki, format: 'der', type: 'spki' }), dsaEncoding: 'der' },
        Buffer.from(body.signature, 'base64'),
      );
      if (!ok || Math.abs(Date.now() - body.timestamp) > 300_000) {
        this.proofs.invalid++;
        return fail(401, 'PROOF_INVALID', 'bad proof');
      }
      this.proofs.valid++;
      if (r.status === 'pending')
        return send(202, { status: 'pending', requestId: poll[1], pollUrl: url, retryAfter: 0 });
      if (r.status === 'rejected')
        return fail(403, 'ENROLLMENT_REJECTED', `Enrollment rejected: ${r.reason}`, { reason: r.reason });
      return send(200, this.issue(r));
    }
    if (req.method === 'POST' && url === '/v1/renew') {
      this.counts.renew++;
      const socket = req.socket as TLSSocket;
      const peer = socket.getPeerCertificate();
      if (!socket.authorized || !peer?.serialNumber) return fail(403, 'FORBIDDEN', 'no client certificate');
      this.renewPeers.push(peer.serialNumber.toLowerCase());
      if (this.o.renewRevoked) return fail(403, 'CERT_REVOKED', 'The presented certificate is revoked');
      const csr = checkCsr(body.csr);
      return send(200, this.issue({ spki: csr.spki, name: csr.commonName ?? '', type: 'client' }));
    }
    return fail(404, 'NOT_FOUND', 'no route');
  }
}
