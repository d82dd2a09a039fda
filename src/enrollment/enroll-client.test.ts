import { createPrivateKey, createPublicKey, generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, PollenError } from '../errors.js';
import { initCa, type LoadedCa, loadCa } from '../pki/ca.js';
import { createCrl } from '../pki/crl.js';
import { checkCsr } from '../pki/csr.js';
import { describeKey } from '../pki/keys.js';
import { type CertType, issueSiteCertificate } from '../pki/profiles.js';
import {
  type EnrollEvent,
  type EnrollKitOptions,
  enrollKit,
  pollProof,
  publicKeyId,
  readEnrollmentState,
} from './enroll-client.js';
import { DEFAULT_BUILDERS, loadKit, planKit, resolveKitSpec, writeKit } from './kit.js';
import { DEFAULT_POLICY_YAML } from './policy.js';
import { parsePolicy } from './policy-load.js';
import { decodeToken, issueToken, loadTokenSigner } from './token.js';

// ---------------------------------------------------------------------------------------------
// A stand-in Certificate Service: real TLS on 127.0.0.1, a certificate from a test CA, counters.

interface StubOptions {
  /** The CA whose certificate the server presents (default: the project CA). */
  tlsCa?: LoadedCa;
  /** The CA /v1/ca answers with (default: tlsCa). */
  caEndpoint?: LoadedCa;
  /** Put the root in the presented chain. */
  presentRoot?: boolean;
  mode?: 'issue' | 'pending' | 'reject';
  /** Answer 503 to the first N enroll requests. */
  failFirst?: number;
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

class StubService {
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
      if (this.counts.enroll <= (this.o.failFirst ?? 0)) return fail(503, 'UNAVAILABLE', 'busy');
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

// ---------------------------------------------------------------------------------------------

let tmp: string;
let ca: LoadedCa;
let other: LoadedCa;
let stub: StubService | undefined;
let n = 0;
const policy = parsePolicy(DEFAULT_POLICY_YAML);

function tokenFor(name: string, caDir = join(tmp, 'ca')) {
  return issueToken(loadTokenSigner(caDir), { subject: name, type: 'client', policy }).token;
}

async function makeKit(url: string, opts: { token?: string | null; name?: string } = {}) {
  const id = ++n;
  const name = opts.name ?? `site-${id}`;
  const dir = join(tmp, `kit-${id}`);
  const token = opts.token === undefined ? tokenFor(name) : opts.token;
  const { spec } = resolveKitSpec({
    name,
    endpoint: 'grpcs://superlink.example.com:9092',
    certServiceUrl: url,
    ...(token !== null && { token }),
  });
  writeKit(dir, await planKit(spec, DEFAULT_BUILDERS));
  return dir;
}

/** A clock that moves only when the client sleeps. */
function fakeTime(start = Date.now()) {
  let t = start;
  return {
    now: () => new Date(t),
    sleep: async (ms: number) => {
      t += ms;
      await new Promise((r) => setImmediate(r));
    },
    advance: (ms: number) => {
      t += ms;
    },
  };
}

function options(extra: EnrollKitOptions = {}): EnrollKitOptions & { events: EnrollEvent[] } {
  const events: EnrollEvent[] = [];
  const time = fakeTime();
  return {
    now: time.now,
    sleep: time.sleep,
    pollIntervalMs: 10,
    maxPollIntervalMs: 100,
    ...extra,
    events,
    onProgress: (e) => {
      events.push(e);
      extra.onProgress?.(e);
    },
  };
}

async function caught(p: Promise<unknown>): Promise<PollenError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof PollenError) return e;
    throw e;
  }
  throw new Error('expected a PollenError');
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pollen-enroll-'));
  await initCa({ name: 'Enroll Test', dir: join(tmp, 'ca'), keyType: 'ec-p256' });
  await initCa({ name: 'Impostor', dir: join(tmp, 'other'), keyType: 'ec-p256' });
  ca = await loadCa(join(tmp, 'ca'));
  other = await loadCa(join(tmp, 'other'));
});
afterEach(async () => {
  await stub?.stop();
  stub = undefined;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('enrollKit', () => {
  it('enrolls: key 0600 made here, certificate checked and saved, state cleared; then keeps it', async () => {
    stub = await new StubService(ca).start();
    const dir = await makeKit(stub.url);
    const o = options();
    const r = await enrollKit(dir, o);
    expect(r.action).toBe('enrolled');
    expect(r.rootCaFingerprint).toBe(ca.rootFingerprint);
    const kit = loadKit(dir);
    expect(statSync(kit.paths.key).mode & 0o777).toBe(0o600);
    expect(statSync(kit.paths.cert).mode & 0o777).toBe(0o644);
    const cert = new X509Certificate(readFileSync(kit.paths.cert));
    expect(publicKeyId(cert.publicKey)).toBe(publicKeyId(createPrivateKey(readFileSync(kit.paths.key))));
    expect(readFileSync(kit.paths.rootCa, 'utf8').trim()).toBe(ca.rootPem.trim());
    expect(readFileSync(kit.paths.chain, 'utf8')).toContain(ca.intermediatePem.trim());
    expect(existsSync(kit.paths.state)).toBe(false);
    expect(o.events.map((e) => e.kind)).toEqual([
      'key-created',
      'pinned',
      'submitted',
      'issued',
      'token-removed',
    ]);
    expect(o.events.at(-2)?.message).toBe(`Enrollment successful. Certificate saved to: ${kit.paths.cert}`);
    expect(stub.counts.enroll).toBe(1);

    // A single-use token (the default policy) is spent: its file is gone.
    expect(existsSync(kit.paths.token)).toBe(false);

    // Again: the certificate is kept; the only request is the revocation check (this stub has no
    // CRL: the check is skipped with a warning event).
    const before = stub.counts.total;
    const o2 = options();
    const again = await enrollKit(dir, o2);
    expect(again.action).toBe('existing');
    expect(again.certificate.fingerprint).toBe(r.certificate.fingerprint);
    expect(stub.counts.total).toBe(before + 1);
    expect(o2.events.map((e) => e.kind)).toEqual(['certificate-valid', 'revocation-unchecked']);
  });

  it('pins the root from the presented chain when the server sends it', async () => {
    stub = await new StubService(ca, { presentRoot: true }).start();
    const o = options();
    await enrollKit(await makeKit(stub.url), o);
    expect(o.events.find((e) => e.kind === 'pinned')).toMatchObject({ source: 'tls-chain' });
    expect(stub.counts.ca).toBe(0);
  });

  it('refuses a service under another root before sending any enroll request', async () => {
    stub = await new StubService(ca, { tlsCa: other }).start();
    const dir = await makeKit(stub.url);
    const err = await caught(enrollKit(dir, options()));
    expect(err.code).toBe('CA_FINGERPRINT_MISMATCH');
    expect(err.exitCode).toBe(ExitCode.UNAUTHORIZED);
    expect(err.message).toContain(other.rootFingerprint);
    expect(err.message).toContain(ca.rootFingerprint);
    expect(stub.counts.enroll).toBe(0);
    expect(stub.counts.poll).toBe(0);
  });

  it('refuses a presented root that is not the pinned one, even in the TLS chain', async () => {
    stub = await new StubService(ca, { tlsCa: other, presentRoot: true }).start();
    const err = await caught(enrollKit(await makeKit(stub.url), options()));
    expect(err.code).toBe('CA_FINGERPRINT_MISMATCH');
    expect(stub.counts.enroll).toBe(0);
  });

  it('does not trust a service that relays the genuine /v1/ca but holds no certificate from it', async () => {
    stub = await new StubService(ca, { tlsCa: other, caEndpoint: ca }).start();
    const err = await caught(enrollKit(await makeKit(stub.url), options()));
    expect(err.code).toBe('TLS_FAILED');
    expect(stub.counts.enroll).toBe(0);
  });

  it('refuses a server certificate of the project CA without the service identity: no token is sent', async () => {
    // Any participant can hold a server certificate of the project for this host name.
    for (const presentRoot of [false, true]) {
      stub = await new StubService(ca, { identity: 'server', presentRoot }).start();
      const o = options();
      const err = await caught(enrollKit(await makeKit(stub.url), o));
      expect(err.code).toBe('TLS_FAILED');
      expect(err.message).toBe(
        `The server at ${stub.url} is not the project's Certificate Service (its certificate lacks the service identity); nothing was sent`,
      );
      expect(stub.counts.enroll).toBe(0);
      expect(stub.counts.poll).toBe(0);
      expect(stub.counts.total).toBe(presentRoot ? 0 : 1); // at most the public GET /v1/ca
      expect(o.events.map((e) => e.kind)).not.toContain('submitted');
      expect(o.events.map((e) => e.kind)).not.toContain('retrying');
      await stub.stop();
      stub = undefined;
    }
  });

  it('requires the service identity on every connection after the pin, not only the first', async () => {
    stub = await new StubService(ca, { identity: 'swap', presentRoot: true }).start();
    const o = options();
    const err = await caught(enrollKit(await makeKit(stub.url), o));
    expect(o.events.find((e) => e.kind === 'pinned')).toMatchObject({ source: 'tls-chain' });
    expect(err.code).toBe('TLS_FAILED');
    expect(err.message).toMatch(
      /is not the project's Certificate Service \(its certificate lacks the service identity\)/,
    );
    expect(stub.counts.total).toBe(0);
    expect(o.events.map((e) => e.kind)).not.toContain('retrying');
  });

  it('waits the whole --max-wait even when the service asks for longer pauses, polling at the end', async () => {
    stub = await new StubService(ca, { mode: 'pending' }).start();
    const o = options({ maxWaitMs: 15_000, pollIntervalMs: undefined, maxPollIntervalMs: 60_000 });
    const err = await caught(enrollKit(await makeKit(stub.url), o));
    expect(err.code).toBe('ENROLLMENT_PENDING');
    // the service says retryAfter 10 s: polls at 0 s, 10 s and the last one at 15 s
    expect(err.message).toMatch(/after 15s/);
  });

  it('resumes a pending request only with the Certificate Service: no poll proof to a plain server', async () => {
    stub = await new StubService(ca, { mode: 'pending' }).start();
    const dir = await makeKit(stub.url);
    expect((await caught(enrollKit(dir, options({ maxWaitMs: 50 })))).code).toBe('ENROLLMENT_PENDING');
    await stub.stop();
    stub = await new StubService(ca, { identity: 'server', presentRoot: true }).start();
    const err = await caught(enrollKit(dir, options({ certServiceUrl: stub.url })));
    expect(err.code).toBe('TLS_FAILED');
    expect(stub.counts.total).toBe(0);
  });

  it('refuses a kit whose rootCA.pem contradicts the token, without connecting', async () => {
    stub = await new StubService(ca).start();
    const dir = await makeKit(stub.url);
    writeFileSync(join(dir, 'startup/rootCA.pem'), other.rootPem);
    const err = await caught(enrollKit(dir, options()));
    expect(err.code).toBe('CA_FINGERPRINT_MISMATCH');
    expect(stub.counts.total).toBe(0);
  });

  it('waits for approval, proving possession of the key on every poll', async () => {
    stub = await new StubService(ca, { mode: 'pending' }).start();
    const dir = await makeKit(stub.url);
    let pending = 0;
    const o = options({
      onProgress: (e) => {
        if (e.kind === 'pending' && ++pending === 3) stub!.approve(e.requestId);
      },
    });
    const r = await enrollKit(dir, o);
    expect(r.action).toBe('enrolled');
    expect(r.requestId).toBe('req_1');
    expect(stub.counts.enroll).toBe(1);
    expect(stub.proofs).toEqual({ valid: 3, invalid: 0 });
    const msg = o.events.find((e) => e.kind === 'pending')!.message;
    expect(msg).toMatch(
      /^waiting for approval of request req_1 \(pending \d+s\) — an admin can run: pollen enrollment approve site-\d+$/,
    );
    // Backoff grows and stays under the cap.
    const delays = o.events.flatMap((e) => (e.kind === 'pending' ? [e.nextPollMs] : []));
    expect(delays[2]!).toBeGreaterThan(delays[0]!);
    expect(Math.max(...delays)).toBeLessThanOrEqual(100);
  });

  it('signs proofs that the service can check with node:crypto', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const p = pollProof('req_x', privateKey, new Date(1_700_000_000_000));
    expect(p.timestamp).toBe(1_700_000_000_000);
    const ok = verify(
      'sha256',
      Buffer.from('pollen-poll:v1:req_x:1700000000000'),
      { key: publicKey, dsaEncoding: 'der' },
      Buffer.from(p.signature, 'base64'),
    );
    expect(ok).toBe(true);
  });

  it('stops with ENROLLMENT_REJECTED and the reason', async () => {
    stub = await new StubService(ca, { mode: 'pending' }).start();
    const dir = await makeKit(stub.url);
    const err = await caught(
      enrollKit(
        dir,
        options({ onProgress: (e) => e.kind === 'pending' && stub!.reject(e.requestId, 'unknown hospital') }),
      ),
    );
    expect(err.code).toBe('ENROLLMENT_REJECTED');
    expect(err.exitCode).toBe(ExitCode.REJECTED);
    expect(err.message).toMatch(/unknown hospital/);
    expect(existsSync(loadKit(dir).paths.state)).toBe(false);
    expect(existsSync(loadKit(dir).paths.cert)).toBe(false);
  });

  it('stops with ENROLLMENT_REJECTED when the policy refuses at once', async () => {
    stub = await new StubService(ca, { mode: 'reject' }).start();
    const err = await caught(enrollKit(await makeKit(stub.url), options()));
    expect(err.code).toBe('ENROLLMENT_REJECTED');
  });

  it('resumes the same pending request with the same key after a restart, without the token', async () => {
    stub = await new StubService(ca, { mode: 'pending' }).start();
    const dir = await makeKit(stub.url);
    const kit = loadKit(dir);
    const err = await caught(enrollKit(dir, options({ maxWaitMs: 200 })));
    expect(err.code).toBe('ENROLLMENT_PENDING');
    expect(err.exitCode).toBe(ExitCode.PENDING);
    expect(err.toJSON()).toMatchObject({ requestId: 'req_1' });
    const state = readEnrollmentState(kit)!;
    expect(state).toMatchObject({ requestId: 'req_1', rootCaFingerprint: ca.rootFingerprint });
    const keyBefore = readFileSync(kit.paths.key, 'utf8');
    expect(state.keyId).toBe(publicKeyId(createPrivateKey(keyBefore)));

    // "Restart": a new call, the token file gone (a single-use token is spent anyway).
    rmSync(kit.paths.token);
    stub.approve('req_1');
    const o = options();
    const r = await enrollKit(dir, o);
    expect(r.action).toBe('enrolled');
    expect(r.requestId).toBe('req_1');
    expect(stub.counts.enroll).toBe(1);
    expect(readFileSync(kit.paths.key, 'utf8')).toBe(keyBefore);
    expect(o.events[0]).toMatchObject({ kind: 'key-reused' });
    expect(stub.proofs.invalid).toBe(0);
  });

  it('retries while the service is unavailable', async () => {
    stub = await new StubService(ca, { failFirst: 2 }).start();
    const o = options();
    const r = await enrollKit(await makeKit(stub.url), o);
    expect(r.action).toBe('enrolled');
    expect(o.events.filter((e) => e.kind === 'retrying')).toHaveLength(2);
    expect(stub.counts.enroll).toBe(3);
  });

  it('gives up on an unreachable service after maxWait with UNAVAILABLE', async () => {
    stub = await new StubService(ca).start();
    const dir = await makeKit(stub.url);
    await stub.stop();
    stub = undefined;
    const o = options({ maxWaitMs: 500 });
    const err = await caught(enrollKit(dir, o));
    expect(err.code).toBe('UNAVAILABLE');
    expect(o.events.some((e) => e.kind === 'retrying')).toBe(true);
  });

  it('refuses a certificate that does not carry our key, and saves nothing', async () => {
    stub = await new StubService(ca, { wrongKey: true }).start();
    const dir = await makeKit(stub.url);
    const err = await caught(enrollKit(dir, options()));
    expect(err.code).toBe('CERT_INVALID');
    expect(err.message).toMatch(/public key/);
    expect(existsSync(loadKit(dir).paths.cert)).toBe(false);
  });

  it('needs a token (TOKEN_MISSING) and one for this kit', async () => {
    stub = await new StubService(ca).start();
    const dir = await makeKit(stub.url, { token: null });
    const err = await caught(enrollKit(dir, options()));
    expect(err.code).toBe('TOKEN_MISSING');
    expect(err.hint).toMatch(/POLLEN_ENROLLMENT_TOKEN/);
    const wrong = await caught(enrollKit(dir, options({ token: tokenFor('someone-else') })));
    expect(wrong.code).toBe('TOKEN_SUBJECT_MISMATCH');
    expect(wrong.exitCode).toBe(ExitCode.INVALID_INPUT);
    expect(wrong.message).toMatch(/someone-else/);
    expect(stub.counts.total).toBe(0);
    // With the right token given as an option (the CLI's --token / POLLEN_ENROLLMENT_TOKEN), it enrolls.
    const name = loadKit(dir).config.name;
    expect((await enrollKit(dir, options({ token: tokenFor(name) }))).action).toBe('enrolled');
  });

  it('renews over mutual TLS with a new key once past the renewal time', async () => {
    stub = await new StubService(ca, { validityMs: 3 * 3_600_000 }).start();
    const dir = await makeKit(stub.url);
    const first = await enrollKit(dir, options());
    const kit = loadKit(dir);
    const oldKey = readFileSync(kit.paths.key, 'utf8');
    const time = fakeTime(first.certificate.renewAt.getTime() + 60_000);
    const r = await enrollKit(dir, options({ now: time.now, sleep: time.sleep }));
    expect(r.action).toBe('renewed');
    expect(stub.renewPeers).toEqual([first.certificate.serial]);
    expect(r.certificate.serial).not.toBe(first.certificate.serial);
    expect(readFileSync(kit.paths.key, 'utf8')).not.toBe(oldKey);
    expect(statSync(kit.paths.key).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(readFileSync(kit.paths.cert));
    expect(publicKeyId(cert.publicKey)).toBe(publicKeyId(createPrivateKey(readFileSync(kit.paths.key))));
    expect(existsSync(`${kit.paths.key}.next`)).toBe(false);
  });

  it('keeps a valid certificate when renewal fails', async () => {
    stub = await new StubService(ca, { validityMs: 3 * 3_600_000 }).start();
    const dir = await makeKit(stub.url);
    const first = await enrollKit(dir, options());
    await stub.stop();
    stub = undefined;
    const time = fakeTime(first.certificate.renewAt.getTime() + 60_000);
    const r = await enrollKit(dir, options({ now: time.now, sleep: time.sleep }));
    expect(r.action).toBe('existing');
    expect(r.renewalError?.code).toBe('UNAVAILABLE');
    expect(existsSync(`${loadKit(dir).paths.key}.next`)).toBe(false);
  });

  it('removes a spent single-use startup/enrollment_token, and keeps a token with uses left', async () => {
    stub = await new StubService(ca).start();
    const name = 'multi-use-site';
    const multiPolicy = parsePolicy(DEFAULT_POLICY_YAML.replace(/max_uses: 1\b/, 'max_uses: 3'));
    const multi = issueToken(loadTokenSigner(join(tmp, 'ca')), {
      subject: name,
      type: 'client',
      policy: multiPolicy,
    }).token;
    expect(decodeToken(multi).pollen.max_uses).toBe(3);
    const dir = await makeKit(stub.url, { name, token: multi });
    const o = options();
    expect((await enrollKit(dir, o)).action).toBe('enrolled');
    expect(readFileSync(loadKit(dir).paths.token, 'utf8').trim()).toBe(multi);
    expect(o.events.map((e) => e.kind)).not.toContain('token-removed');

    const single = await makeKit(stub.url);
    const kit = loadKit(single);
    expect(decodeToken(readFileSync(kit.paths.token, 'utf8')).pollen.max_uses).toBe(1);
    expect((await enrollKit(single, options())).action).toBe('enrolled');
    expect(existsSync(kit.paths.token)).toBe(false);
  });

  it('fails with CERT_REVOKED when the CRL lists the certificate; starts with a warning when the service is down', async () => {
    stub = await new StubService(ca, { revoked: [] }).start();
    const dir = await makeKit(stub.url);
    const first = await enrollKit(dir, options());
    const o = options();
    expect((await enrollKit(dir, o)).action).toBe('existing');
    expect(stub.counts.crl).toBe(1);
    expect(o.events.map((e) => e.kind)).toEqual(['certificate-valid']);
    await stub.stop();

    // Node writes serials in upper case, the CRL in lower case; leading zeros do not matter.
    stub = await new StubService(ca, { revoked: ['0abc', first.certificate.serial.toUpperCase()] }).start();
    const err = await caught(enrollKit(dir, options({ certServiceUrl: stub.url, renew: false })));
    expect(err.code).toBe('CERT_REVOKED');
    expect(err.exitCode).toBe(ExitCode.UNAUTHORIZED);
    const name = loadKit(dir).config.name;
    expect(err.message).toBe(
      `The certificate startup/${name}.crt was revoked on 2025-01-02T03:04:05.000Z; ask the project admin for a new token`,
    );
    expect(stub.counts.crl).toBe(1);
    expect(stub.counts.renew).toBe(0);
    const url = stub.url;
    await stub.stop();
    stub = undefined;

    // The service is down: the site starts, with a warning.
    const down = options({ certServiceUrl: url });
    expect((await enrollKit(dir, down)).action).toBe('existing');
    const warning = down.events.find((e) => e.kind === 'revocation-unchecked');
    expect(warning?.message).toMatch(
      /could not check startup\/.*\.crt against the revocation list \(UNAVAILABLE\).*starting anyway/,
    );
  });

  it('does not keep a certificate whose renewal is refused as revoked', async () => {
    stub = await new StubService(ca, { validityMs: 3 * 3_600_000, renewRevoked: true }).start();
    const dir = await makeKit(stub.url);
    const first = await enrollKit(dir, options());
    const time = fakeTime(first.certificate.renewAt.getTime() + 60_000);
    const o = options({ now: time.now, sleep: time.sleep });
    const err = await caught(enrollKit(dir, o));
    expect(err.code).toBe('CERT_REVOKED');
    expect(err.message).toMatch(/was revoked .*ask the project admin for a new token/);
    expect(stub.counts.renew).toBe(1);
    expect(o.events.map((e) => e.kind)).not.toContain('renewal-failed');
    expect(o.events.some((e) => /stays in use/.test(e.message))).toBe(false);
    expect(existsSync(`${loadKit(dir).paths.key}.next`)).toBe(false);
  });

  it('renews only with the Certificate Service: a plain server certificate gets no renewal request', async () => {
    stub = await new StubService(ca, { validityMs: 3 * 3_600_000 }).start();
    const dir = await makeKit(stub.url);
    const first = await enrollKit(dir, options());
    await stub.stop();
    stub = await new StubService(ca, { identity: 'server' }).start();
    const time = fakeTime(first.certificate.renewAt.getTime() + 60_000);
    const r = await enrollKit(dir, options({ now: time.now, sleep: time.sleep, certServiceUrl: stub.url }));
    expect(r.action).toBe('existing');
    expect(r.renewalError?.code).toBe('TLS_FAILED');
    expect(r.renewalError?.message).toMatch(/is not the project's Certificate Service/);
    expect(stub.counts.renew).toBe(0);
    expect(stub.counts.total).toBe(0);
    expect(r.certificate.serial).toBe(first.certificate.serial);
    expect(existsSync(`${loadKit(dir).paths.key}.next`)).toBe(false);
  });

  it('accepts a manually copied certificate and key (no token, no service)', async () => {
    const dir = await makeKit('https://127.0.0.1:9', { token: null, name: 'manual-site' });
    const kit = loadKit(dir);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issued = issueSiteCertificate(
      ca.issuer,
      publicKey.export({ type: 'spki', format: 'der' }),
      describeKey(publicKey),
      { name: 'manual-site', type: 'client', project: ca.meta.name },
      86_400_000,
    );
    // `pollen cert site` style: leaf + intermediate in NAME.crt.
    writeFileSync(kit.paths.cert, `${issued.pem}${ca.intermediatePem}\n`);
    writeFileSync(kit.paths.key, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(kit.paths.rootCa, ca.rootPem);
    const r = await enrollKit(dir, options());
    expect(r.action).toBe('existing');
    expect(r.certificate.serial).toBe(issued.serial);

    // The same certificate, once expired, is no longer enough.
    const later = fakeTime(Date.now() + 2 * 86_400_000);
    const err = await caught(enrollKit(dir, options({ now: later.now })));
    expect(err.code).toBe('TOKEN_MISSING');
    expect(err.message).toMatch(/expired/);
  });

  it('re-enrolls with a fresh key when the certificate expired', async () => {
    const time = fakeTime();
    stub = await new StubService(ca, { validityMs: 3_600_000, clock: time.now }).start();
    const dir = await makeKit(stub.url);
    const kit = loadKit(dir);
    const first = await enrollKit(dir, options({ now: time.now, sleep: time.sleep }));
    const oldKey = readFileSync(kit.paths.key, 'utf8');
    time.advance(2 * 3_600_000);
    // The single-use token was spent (and removed) by the first enrollment: a new one is needed.
    expect(existsSync(kit.paths.token)).toBe(false);
    const o = options({ now: time.now, sleep: time.sleep, token: tokenFor(kit.config.name) });
    const r = await enrollKit(dir, o);
    expect(o.events[0]).toMatchObject({ kind: 'certificate-unusable' });
    expect(o.events[0]!.message).toMatch(/expired/);
    expect(r.action).toBe('enrolled');
    expect(r.certificate.serial).not.toBe(first.certificate.serial);
    expect(readFileSync(kit.paths.key, 'utf8')).not.toBe(oldKey);
  });
});
