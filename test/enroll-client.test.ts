/**
 * Auto-enrollment end to end: kits made by `pollen package`, started with `pollen start` (the
 * CLI's main() in this process; one case runs the built CLI as a real process) against the real
 * Certificate Service on 127.0.0.1, with real TLS, approvals made through the admin API, and
 * renewal over mutual TLS through the library.
 */
import { spawn } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertServiceClient } from '../src/enrollment/cert-service-client.js';
import { enrollKit, publicKeyId, readEnrollmentState } from '../src/enrollment/enroll-client.js';
import { loadKit } from '../src/enrollment/kit.js';
import { loadPolicy } from '../src/enrollment/policy-load.js';
import type { RunningCertService } from '../src/enrollment/service/server.js';
import { issueToken, loadTokenSigner } from '../src/enrollment/token.js';
import { ExitCode } from '../src/errors.js';
import { initCa, loadCa } from '../src/pki/ca.js';
import { describeKey } from '../src/pki/keys.js';
import { issueSiteCertificate } from '../src/pki/profiles.js';
import { type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { ensureBuilt, pollenInProcess } from './support/cli.js';
import { cliEnv } from './support/federation.js';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'pollen.js');
const API_KEY = 'pollen_test_admin_key_enroll_client_0123456789';
const POLICY = testPolicy('enroll-client-test', [
  '{ name: "hospitals-auto", match: { site_name_pattern: "hospital-*" }, action: approve }',
  '{ name: "others-wait", match: {}, action: pending }',
]);

let tmp: string;
let caDir: string;
let policyFile: string;
let rootFingerprint: string;
let cs: LiveCertService;
let svc: RunningCertService;
let admin: CertServiceClient;

interface Run {
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Standard error so far. */
  stderr: () => string;
}

/** Run the CLI in this process (as a spawned one would: clean environment, the temporary folder). */
function pollen(args: string[], env: Record<string, string> = {}) {
  return background(args, env).done;
}

/** The same, followed while it runs; the Certificate Service answers from this very process. */
function background(args: string[], env: Record<string, string> = {}): Run {
  let stderr = '';
  const done = pollenInProcess(args, {
    cwd: tmp,
    env: cliEnv(env),
    clean: true,
    onStderr: (text) => (stderr += text),
  }).then(({ code, stdout, stderr }) => ({ code, stdout, stderr }));
  return { done, stderr: () => stderr };
}

/** The built CLI as a real process, without blocking (the service answers from this process). */
function spawned(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: tmp, env: cliEnv(env), stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((res) =>
    child.on('exit', (code) => res({ code, stdout, stderr })),
  );
  return { done, stderr: () => stderr };
}

const token = (subject: string) => cs.token(subject);

async function makeKit(name: string, opts: { token?: boolean } = {}) {
  const out = join(tmp, name);
  const args = ['package', '-n', name, '-e', 'grpcs://superlink.example.com:9092', '-o', out, '-c', caDir];
  args.push('--cert-service', svc.url);
  if (opts.token !== false) args.push('--token', token(name));
  const r = await pollen(args);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

async function waitForPending(name: string, timeoutMs = 20_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const found = (await admin.listRequests('pending')).find((r) => r.name === name);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no pending request for ${name}`);
}

beforeAll(async () => {
  ensureBuilt('cli/commands/start.js');
  tmp = mkdtempSync(join(tmpdir(), 'pollen-enroll-e2e-'));
  cs = await startLiveCertService(tmp, {
    name: 'Enroll E2E',
    keyType: 'ec-p256',
    apiKey: API_KEY,
    policy: POLICY,
    hostnames: ['127.0.0.1'],
  });
  ({ svc, caDir, policyFile } = cs);
  rootFingerprint = svc.rootFingerprint;
  admin = new CertServiceClient({
    url: svc.url,
    apiKey: API_KEY,
    caCert: readFileSync(join(caDir, 'rootCA.pem'), 'utf8'),
  });
}, 120_000);

afterAll(async () => {
  await admin?.close();
  await cs?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('pollen start against the Certificate Service', () => {
  it('enrolls an auto-approved site, then finds the certificate valid', async () => {
    const kit = await makeKit('hospital-1');
    const r = await pollen(['start', kit, '--enroll-only', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(ExitCode.OK);
    const body = JSON.parse(r.stdout);
    expect(body).toMatchObject({
      ok: true,
      action: 'enrolled',
      name: 'hospital-1',
      type: 'client',
      rootCaFingerprint: rootFingerprint,
      participant: { status: 'enrolled' },
      certificate: { path: join(kit, 'startup/hospital-1.crt') },
    });
    expect(r.stderr).toMatch(/uses the pinned root CA/);
    expect(statSync(join(kit, 'startup/hospital-1.key')).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(readFileSync(join(kit, 'startup/hospital-1.crt')));
    expect(cert.subject).toMatch(/CN=hospital-1/);
    expect(publicKeyId(cert.publicKey)).toBe(
      publicKeyId(createPrivateKey(readFileSync(join(kit, 'startup/hospital-1.key')))),
    );

    // Text mode, second start: the certificate is kept (--enroll-only: the SuperNode is not started).
    const again = await pollen(['start', kit, '--enroll-only']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/client "hospital-1" is enrolled/);
    expect(again.stdout).toMatch(/renewal from/);
    expect(again.stdout).not.toMatch(/Enrollment successful/);
    // The kit still verifies: enrollment only added files the site owns.
    const v = await pollen(['package', 'verify', kit, '--root-fingerprint', rootFingerprint]);
    expect(v.code, v.stderr).toBe(0);
  });

  it("prints FLARE's success line in text mode", async () => {
    const kit = await makeKit('hospital-2');
    const r = await pollen(['start', kit, '--enroll-only']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `Enrollment successful. Certificate saved to: ${join(kit, 'startup/hospital-2.crt')}`,
    );
  });

  it('waits for approval with visible progress, and completes when an admin approves', async () => {
    const kit = await makeKit('clinic-1');
    const run = background(['start', kit, '--enroll-only', '--poll-interval', '0.1', '--json']);
    const req = await waitForPending('clinic-1');
    for (let i = 0; i < 100 && !/still waits for approval/.test(run.stderr()); i++)
      await new Promise((r) => setTimeout(r, 50));
    // What it waits for, the command that approves it, the documented limit; then progress.
    expect(run.stderr()).toContain(
      [
        `waiting for an admin to approve request ${req.id} of client "clinic-1"`,
        `  an admin approves it with: pollen enrollment approve ${req.id} --cert-service ${svc.url}`,
        '  waiting up to 24h; stopping keeps the request, and the next start resumes it',
      ].join('\n'),
    );
    expect(run.stderr()).toMatch(
      new RegExp(`request ${req.id} still waits for approval \\(\\d+s so far, waiting up to 24h\\)`),
    );
    await admin.approve({ names: ['clinic-1'] });
    const r = await run.done;
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, action: 'enrolled', requestId: req.id });
  });

  it('gives up after --max-wait with exit 8, and a restart resumes the same request', async () => {
    const kit = await makeKit('clinic-2');
    const first = await pollen([
      'start',
      kit,
      '--enroll-only',
      '--poll-interval',
      '0.1',
      '--max-wait',
      '0.5',
      '--json',
    ]);
    expect(first.code, first.stderr).toBe(ExitCode.PENDING);
    const err = JSON.parse(first.stdout).error;
    expect(err.code).toBe('ENROLLMENT_PENDING');
    const state = readEnrollmentState(loadKit(kit))!;
    expect(state.requestId).toBe(err.requestId);
    const keyBefore = readFileSync(join(kit, 'startup/clinic-2.key'), 'utf8');

    // The token is spent; the restart needs only the key and the state.
    rmSync(join(kit, 'startup/enrollment_token'));
    await admin.approve({ names: ['clinic-2'] });
    const second = await pollen(['start', kit, '--enroll-only', '--poll-interval', '0.1', '--json']);
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ action: 'enrolled', requestId: err.requestId });
    expect(readFileSync(join(kit, 'startup/clinic-2.key'), 'utf8')).toBe(keyBefore);
    expect(existsSync(join(kit, 'startup/enrollment_state.json'))).toBe(false);
  });

  it('tells every kit type what it waits for, and the command it prints approves it', async () => {
    const signer = loadTokenSigner(caDir);
    const kinds = [
      { type: 'client', name: 'ward-1', token: 'client', endpoint: 'grpcs://link.example.org:9092' },
      { type: 'server', name: 'link-1', token: 'server', endpoint: 'grpcs://0.0.0.0:9092:9093' },
      { type: 'relay', name: 'edge-1', token: 'relay', endpoint: 'grpcs://link.example.org:9092' },
      {
        type: 'admin',
        name: 'alice@example.org',
        token: 'user',
        endpoint: 'grpcs://link.example.org:9092:9093',
      },
    ] as const;
    for (const k of kinds) {
      const kit = join(tmp, `waiting-${k.type}`);
      const t = issueToken(signer, { subject: k.name, type: k.token, policy: loadPolicy(policyFile) }).token;
      const made = await pollen(
        ['package', '-n', k.name, '-t', k.type, '-e', k.endpoint, '-o', kit, '-c', caDir],
        { POLLEN_CERT_SERVICE_URL: svc.url, POLLEN_ENROLLMENT_TOKEN: t },
      );
      expect(made.code, made.stderr).toBe(0);
      const waited = await pollen(['start', kit, '--enroll-only', '--token', t, '--poll-interval', '0.2'], {
        POLLEN_MAX_WAIT: '1',
      });
      expect(waited.code, waited.stderr).toBe(ExitCode.PENDING);
      const id = readEnrollmentState(loadKit(kit))!.requestId!;
      const approve = `pollen enrollment approve ${id} --cert-service ${svc.url}`;
      expect(waited.stderr).toContain(
        `waiting for an admin to approve request ${id} of ${k.type} "${k.name}"`,
      );
      expect(waited.stderr).toContain(`an admin approves it with: ${approve}\n  waiting up to 1s`);
      expect(waited.stderr).toMatch(
        new RegExp(
          `error\\[ENROLLMENT_PENDING\\]: Request ${id} of ${k.type} "${k.name}" is still waiting for approval after \\d+s`,
        ),
      );
      expect(waited.stderr).toContain(`hint: An admin approves it with: ${approve}.`);

      const approved = await pollen(approve.split(' ').slice(1), {
        POLLEN_API_KEY: API_KEY,
        POLLEN_CA_CERT: join(caDir, 'rootCA.pem'),
      });
      expect(approved.code, approved.stderr).toBe(0);
      expect(approved.stdout).toContain(`approved`);
      expect(approved.stdout).toContain(k.name);
      const resumed = await pollen(['start', kit, '--enroll-only']);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout).toContain('Enrollment successful. Certificate saved to:');
    }
  });

  it('takes the wait limit as seconds or a duration, from --max-wait or POLLEN_MAX_WAIT', async () => {
    const kit = await makeKit('hospital-limit');
    for (const [args, env] of [
      [['--max-wait', 'soon'], {}],
      [[], { POLLEN_MAX_WAIT: 'soon' }],
    ] as const) {
      const bad = await pollen(['start', kit, '--enroll-only', '--json', ...args], env);
      expect(bad.code).toBe(ExitCode.USAGE);
      expect(JSON.parse(bad.stdout).error).toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: '--max-wait takes seconds or a duration like 30m, 2h or 1d (got "soon")',
      });
    }
    const r = await pollen(['start', kit, '--enroll-only', '--json'], { POLLEN_MAX_WAIT: '1h30m' });
    expect(r.code, r.stderr).toBe(0);
  });

  it('stops with exit 9 and the reason when an admin rejects', async () => {
    const kit = await makeKit('clinic-3');
    // The one case that runs the built CLI as a real process: its exit status is what start.sh sees.
    const run = spawned(['start', kit, '--poll-interval', '0.1', '--json']);
    await waitForPending('clinic-3');
    await admin.reject({ names: ['clinic-3'], reason: 'not a member of this federation' });
    const r = await run.done;
    expect(r.code).toBe(ExitCode.REJECTED);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: 'ENROLLMENT_REJECTED' });
    expect(r.stdout).toMatch(/not a member of this federation/);
  });

  it('takes the token and URL from the environment', async () => {
    const kit = join(tmp, 'hospital-env');
    expect(
      (await pollen(['package', '-n', 'hospital-env', '-e', 'grpcs://s:9092', '-o', kit, '-c', caDir])).code,
    ).toBe(0);
    const missing = await pollen(['start', kit, '--json']);
    expect(missing.code).toBe(ExitCode.UNAUTHORIZED);
    expect(JSON.parse(missing.stdout).error.code).toBe('TOKEN_MISSING');
    const r = await pollen(['start', kit, '--enroll-only', '--json'], {
      POLLEN_ENROLLMENT_TOKEN: token('hospital-env'),
      POLLEN_CERT_SERVICE_URL: svc.url,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).action).toBe('enrolled');
  });

  it('refuses a token from another project before sending it', async () => {
    const otherCa = join(tmp, 'other-ca');
    await initCa({ name: 'Other', dir: otherCa, keyType: 'ec-p256' });
    const foreign = issueToken(loadTokenSigner(otherCa), {
      subject: 'hospital-x',
      policy: loadPolicy(policyFile),
    }).token;
    const kit = join(tmp, 'hospital-x');
    expect(
      (
        await pollen([
          'package',
          '-n',
          'hospital-x',
          '-e',
          'grpcs://s:9092',
          '-o',
          kit,
          '--cert-service',
          svc.url,
          '--token',
          foreign,
        ])
      ).code,
    ).toBe(0);
    const r = await pollen(['start', kit, '--json']);
    expect(r.code).toBe(ExitCode.UNAUTHORIZED);
    expect(JSON.parse(r.stdout).error.code).toBe('CA_FINGERPRINT_MISMATCH');
    expect((await admin.enrolled()).some((e) => e.name === 'hospital-x')).toBe(false);
  });

  it('removes the spent single-use token, and refuses to start once the certificate is revoked', async () => {
    const kit = await makeKit('hospital-revoked');
    const r = await pollen(['start', kit, '--enroll-only', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(ExitCode.OK);
    const serial = JSON.parse(r.stdout).certificate.serial as string;
    // The policy's tokens are single-use: spent, so removed.
    expect(existsSync(join(kit, 'startup/enrollment_token'))).toBe(false);
    expect(r.stderr).toMatch(/removed startup\/enrollment_token: the single-use token is spent/);

    // Not revoked: the CRL check passes quietly.
    const ok = await pollen(['start', kit, '--enroll-only', '--json']);
    expect(ok.code, ok.stderr).toBe(ExitCode.OK);
    expect(ok.stderr).not.toMatch(/revocation list/);

    // POST /v1/revoke with the admin API key, then start again: exit 5 (sub_start.sh stops).
    const revoked = await admin.revoke({ names: ['hospital-revoked'], reason: 'test' });
    expect(revoked.map((x) => x.serial)).toContain(serial);
    const after = await pollen(['start', kit, '--enroll-only', '--json']);
    expect(after.code, after.stdout + after.stderr).toBe(ExitCode.UNAUTHORIZED);
    const err = JSON.parse(after.stdout).error;
    expect(err.code).toBe('CERT_REVOKED');
    expect(err.message).toMatch(
      /^The certificate startup\/hospital-revoked\.crt was revoked on \d{4}-\d\d-\d\dT.*; ask the project admin for a new token$/,
    );

    // Renewal of the revoked certificate is refused, and not reported as "stays in use".
    const renew = enrollKit(kit, { renew: 'now' });
    await expect(renew).rejects.toMatchObject({ code: 'CERT_REVOKED' });
  });

  it('starts with a warning when the Certificate Service cannot be reached', async () => {
    const kit = await makeKit('hospital-offline');
    expect((await pollen(['start', kit, '--enroll-only'])).code).toBe(0);
    const r = await pollen(['start', kit, '--enroll-only', '--cert-service', 'https://127.0.0.1:9']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /could not check startup\/hospital-offline\.crt against the revocation list \(UNAVAILABLE\)/,
    );
    expect(r.stdout).toMatch(/client "hospital-offline" is enrolled/);
  });

  it('renews over mutual TLS through the library', async () => {
    const kit = await makeKit('hospital-renew');
    const first = await enrollKit(kit);
    expect(first.action).toBe('enrolled');
    const later = new Date(first.certificate.renewAt.getTime() + 60_000);
    const r = await enrollKit(kit, { now: () => later });
    expect(r.action).toBe('renewed');
    expect(r.certificate.serial).not.toBe(first.certificate.serial);
    const enrolled = (await admin.enrolled('client')).filter((e) => e.name === 'hospital-renew');
    expect(enrolled.map((e) => e.serial).sort()).toEqual(
      [first.certificate.serial, r.certificate.serial].sort(),
    );
    const again = await enrollKit(kit);
    expect(again.action).toBe('existing');
    expect(again.certificate.serial).toBe(r.certificate.serial);
  });
});

describe('a participant posing as the Certificate Service', () => {
  /**
   * What any site with a server certificate of the project could run: real TLS on 127.0.0.1 with
   * a server certificate from the same project CA, valid for localhost and 127.0.0.1, but without
   * the Certificate Service identity. It records every HTTP request it gets.
   */
  async function impostor() {
    const ca = await loadCa(caDir);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const leaf = issueSiteCertificate(
      ca.issuer,
      publicKey.export({ type: 'spki', format: 'der' }),
      describeKey(publicKey),
      { name: 'cert-service', type: 'server', project: ca.meta.name, hosts: ['localhost', '127.0.0.1'] },
      86_400_000,
    );
    const seen: Array<{ method: string; url: string; authorization?: string; body: string }> = [];
    const server = createServer(
      {
        key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
        cert: `${leaf.pem}${ca.intermediatePem}\n${ca.rootPem}\n`,
      },
      (req, res) => {
        let body = '';
        req.on('data', (d) => (body += d));
        req.on('end', () => {
          seen.push({
            method: req.method ?? '',
            url: req.url ?? '',
            ...(req.headers.authorization !== undefined && { authorization: req.headers.authorization }),
            body,
          });
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(
            req.url === '/v1/ca'
              ? JSON.stringify({
                  root: ca.rootPem,
                  intermediate: ca.intermediatePem,
                  chain: ca.chainPem,
                  rootFingerprint: ca.rootFingerprint,
                })
              : '{}',
          );
        });
      },
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return {
      url,
      seen,
      close: () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    };
  }

  it('pollen start sends it no token and fails with TLS_FAILED', async () => {
    const fake = await impostor();
    try {
      const kit = await makeKit('hospital-impostor');
      const secret = readFileSync(join(kit, 'startup/enrollment_token'), 'utf8').trim();
      const r = await pollen(['start', kit, '--enroll-only', '--json'], {
        POLLEN_CERT_SERVICE_URL: fake.url,
      });
      expect(r.code, r.stdout + r.stderr).toBe(ExitCode.UNAUTHORIZED);
      const err = JSON.parse(r.stdout).error;
      expect(err.code).toBe('TLS_FAILED');
      expect(err.message).toBe(
        `The server at ${fake.url} is not the project's Certificate Service (its certificate lacks the service identity); nothing was sent`,
      );
      expect(fake.seen.filter((q) => q.url !== '/v1/ca')).toEqual([]);
      expect(JSON.stringify(fake.seen)).not.toContain(secret);
      expect(existsSync(join(kit, 'startup/hospital-impostor.crt'))).toBe(false);
      // The genuine service still enrolls the same kit.
      const ok = await pollen(['start', kit, '--enroll-only', '--json']);
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, action: 'enrolled' });
    } finally {
      await fake.close();
    }
  });

  it('the admin client trusting the project root does not send it the API key', async () => {
    const fake = await impostor();
    const client = new CertServiceClient({
      url: fake.url,
      apiKey: API_KEY,
      caCert: readFileSync(join(caDir, 'rootCA.pem'), 'utf8'),
    });
    try {
      const err = await client.listRequests().then(
        () => null,
        (e: unknown) => e as { code: string; message: string },
      );
      expect(err?.code).toBe('TLS_FAILED');
      expect(err?.message).toMatch(/is not the project's Certificate Service/);
      expect(fake.seen).toEqual([]);
      // The real service, under the same root, is accepted.
      expect((await admin.health()).status).toBe('ok');
    } finally {
      await client.close();
      await fake.close();
    }
  });
});
