import { createPrivateKey, generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pollenErrorOf as caught } from '../../test/support/errors.js';
import { twoCas } from '../../test/support/fixtures.js';
import { StubService } from '../../test/support/stub-cert-service.js';
import { ExitCode } from '../errors.js';
import type { LoadedCa } from '../pki/ca.js';
import { describeKey } from '../pki/keys.js';
import { issueSiteCertificate } from '../pki/profiles.js';
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

// Against a stand-in Certificate Service (test/support/stub-cert-service.ts): real TLS on
// 127.0.0.1, a certificate from a test CA, counters; the client's clock moves only when it sleeps.

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

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pollen-enroll-'));
  ({ ca, other } = await twoCas(tmp, 'Enroll Test', 'Impostor'));
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
    const [first, later] = o.events.filter((e) => e.kind === 'pending').map((e) => e.message);
    const approve = `pollen enrollment approve req_1 --cert-service ${new URL(stub.url).origin}`;
    expect(first!.split('\n')).toEqual([
      expect.stringMatching(/^waiting for an admin to approve request req_1 of client "site-\d+"$/),
      `  an admin approves it with: ${approve}`,
      '  waiting until it is decided; stopping keeps the request, and the next start resumes it',
    ]);
    expect(later).toMatch(
      /^request req_1 still waits for approval \(\d+s so far, waiting until it is decided\); next check in \d+s$/,
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

  it('retries a 5xx or 429 answer whose code it does not know, and not a refusal', async () => {
    for (const failWith of [
      { status: 429, code: 'SLOW_DOWN' },
      { status: 500, code: 'SOME_NEW_FAILURE' },
      { status: 503, code: 'DATABASE_UNAVAILABLE' },
    ]) {
      stub = await new StubService(ca, { failFirst: 2, failWith }).start();
      const o = options();
      expect((await enrollKit(await makeKit(stub.url), o)).action, failWith.code).toBe('enrolled');
      const retried = o.events.flatMap((e) => (e.kind === 'retrying' ? [e.error.code] : []));
      expect(retried).toEqual(
        failWith.status === 429
          ? ['RATE_LIMITED', 'RATE_LIMITED']
          : [
              failWith.status === 500 ? 'UNAVAILABLE' : 'DATABASE_UNAVAILABLE',
              failWith.status === 500 ? 'UNAVAILABLE' : 'DATABASE_UNAVAILABLE',
            ],
      );
      await stub.stop();
    }
    stub = await new StubService(ca, {
      failFirst: 2,
      failWith: { status: 400, code: 'SOME_NEW_CHECK' },
    }).start();
    const o = options();
    const err = await caught(enrollKit(await makeKit(stub.url), o));
    expect(err).toMatchObject({ code: 'INVALID_REQUEST', retryable: false });
    expect(o.events.map((e) => e.kind)).not.toContain('retrying');
    expect(stub.counts.enroll).toBe(1);
  });

  it('stops at once when cancelled, without retrying: while waiting, or with a request in flight', async () => {
    stub = await new StubService(ca, { mode: 'pending' }).start();
    const waiting = new AbortController();
    const o = options({
      signal: waiting.signal,
      onProgress: (e) => e.kind === 'pending' && waiting.abort(),
    });
    const err = await caught(enrollKit(await makeKit(stub.url), o));
    expect(err).toMatchObject({ code: 'CANCELLED', retryable: false, exitCode: ExitCode.UNAVAILABLE });
    expect(stub.counts.poll).toBe(0);
    await stub.stop();

    stub = await new StubService(ca, { failFirst: 1 }).start();
    const inFlight = new AbortController();
    const o2 = options({
      signal: inFlight.signal,
      onProgress: (e) => e.kind === 'submitted' && queueMicrotask(() => inFlight.abort()),
    });
    const err2 = await caught(enrollKit(await makeKit(stub.url), o2));
    expect(err2.code).toBe('CANCELLED');
    expect(o2.events.map((e) => e.kind)).not.toContain('retrying');
    expect(stub.counts.enroll).toBeLessThanOrEqual(1);
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
