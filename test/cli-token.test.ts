// `pollen token …` run in-process through the CLI's main() (one case as a real process, from the
// build: `npx tsc -p tsconfig.build.json`), on a CA folder made here with openssl (rootCA.pem,
// ca.json, token.key), and against a fake Certificate Service on 127.0.0.1 with real TLS for the
// remote mode.

import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { importSPKI, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../src/errors.js';
import { opensslCsr } from './support/cert-service.js';
import { pollenAsync, pollenInProcess } from './support/cli.js';
import { makeCaFolder } from './support/fixtures.js';

const ROOT = resolve(import.meta.dirname, '..');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: () => Record<string, unknown> & { ok: boolean };
}

/**
 * Run the CLI in this process with a clean environment (PATH and the given variables), as a
 * spawned `pollen` would see it; one case below runs the real process.
 */
async function pollen(
  args: string[],
  opts: { env?: Record<string, string>; input?: string; cwd?: string } = {},
): Promise<Run> {
  const r = await pollenInProcess(args, {
    env: opts.env,
    input: opts.input,
    cwd: opts.cwd ?? ROOT,
    clean: true,
  });
  return { ...r, json: () => r.json() };
}

/** `pollen token generate -s SUBJECT` with `more` flags. */
const generate = (subject: string, more: string[], opts?: Parameters<typeof pollen>[1]) =>
  pollen(['token', 'generate', '-s', subject, ...more], opts);

const mode = (path: string) => statSync(path).mode & 0o777;

let dir: string;
let ca: string;
let otherCa: string;

/** The root certificate of a CA folder (the test CA unless named). */
const caCert = (caDir = ca) => join(caDir, 'rootCA.pem');

/** Verify a token with jose against the CA folder's token key: the independent check. */
async function verifyWithJose(token: string, caDir = ca) {
  const pub = createPublicKey(createPrivateKey(readFileSync(join(caDir, 'token.key')))).export({
    type: 'spki',
    format: 'pem',
  }) as string;
  const key = await importSPKI(pub, 'ES256');
  return jwtVerify(token, key, {
    algorithms: ['ES256'],
    typ: 'pollen-enroll+jwt',
    audience: 'pollen-cert-service',
  });
}

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'commands', 'token.js')))
    throw new Error('Build the CLI first: npx tsc -p tsconfig.build.json');
  dir = mkdtempSync(join(tmpdir(), 'pollen-cli-token-'));
  ca = join(dir, 'ca');
  otherCa = join(dir, 'other-ca');
  makeCaFolder(ca, 'demo');
  makeCaFolder(otherCa, 'other');
  writeFileSync(
    join(dir, 'hospitals.yaml'),
    `metadata: {project: hospitals, version: "3"}
token: {validity: 12h, max_uses: 2}
site: {name_pattern: "hospital-*"}
user: {allowed_roles: [member], default_role: member}
approval: {rules: [{name: all, match: {}, action: pending}]}
`,
  );
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('pollen token generate (local mode)', () => {
  it('prints only the token on stdout; jose verifies it', async () => {
    const r = await pollen(['token', 'generate', '-s', 'hospital-1', '-c', ca]);
    expect(r.code).toBe(ExitCode.OK);
    const token = r.stdout.trim();
    expect(r.stdout).toBe(`${token}\n`);
    expect(token.split('.')).toHaveLength(3);
    expect(r.stderr).toContain('client token for hospital-1');
    const { payload, protectedHeader } = await verifyWithJose(token);
    expect(protectedHeader).toMatchObject({ alg: 'ES256', typ: 'pollen-enroll+jwt' });
    expect(payload).toMatchObject({
      sub: 'hospital-1',
      iss: 'pollen:demo',
      pollen: {
        subject_type: 'client',
        roles: [],
        max_uses: 1,
        policy: { project: 'pollen-default', version: '1.0' },
      },
    });
    expect((payload.exp as number) - (payload.iat as number)).toBe(7 * 86_400);
  });

  it('--org puts the organisation in the token, token info shows it; a bad one is INVALID_ARGUMENT', async () => {
    const r = await pollen([
      'token',
      'generate',
      '-s',
      'admin@one.example',
      '--user',
      '--org',
      'Hospital One',
      '-c',
      ca,
    ]);
    expect(r.code).toBe(ExitCode.OK);
    const { payload } = await verifyWithJose(r.stdout.trim());
    expect(payload).toMatchObject({ pollen: { org: 'Hospital One', roles: ['lead'] } });
    const info = await pollen(['token', 'info', '-t', r.stdout.trim(), '--json']);
    expect(info.json()).toMatchObject({ org: 'Hospital One' });
    const bad = await pollen(['token', 'generate', '-s', 'hospital-9', '--org', 'a/b', '-c', ca, '--json']);
    expect([bad.code, (bad.json().error as { code: string }).code]).toEqual([
      ExitCode.USAGE,
      'INVALID_ARGUMENT',
    ]);
  });

  it('--json prints {token, tokenId, subject, subjectType, expiresAt}', async () => {
    const r = await pollen(['token', 'generate', '-s', 'hospital-2', '-c', ca, '--json']);
    expect(r.code).toBe(0);
    const j = r.json();
    expect(j).toEqual({
      ok: true,
      token: expect.any(String),
      tokenId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      subject: 'hospital-2',
      subjectType: 'client',
      expiresAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      mode: 'local',
      output: null,
    });
    const { payload } = await verifyWithJose(j['token'] as string);
    expect(payload.jti).toBe(j['tokenId']);
    expect(new Date((payload.exp as number) * 1000).toISOString().replace('.000Z', 'Z')).toBe(j['expiresAt']);
  });

  it('-o writes the token to a 0600 file and refuses to overwrite without --force', async () => {
    const file = join(dir, 'hospital-3.token');
    const r = await pollen(['token', 'generate', '-s', 'hospital-3', '-c', ca, '-o', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(file);
    expect(mode(file)).toBe(0o600);
    const token = readFileSync(file, 'utf8');
    expect((await verifyWithJose(token)).payload.sub).toBe('hospital-3');
    const again = await pollen(['token', 'generate', '-s', 'hospital-3', '-c', ca, '-o', file, '--json']);
    expect(again.code).toBe(ExitCode.CONFLICT);
    expect(again.json()).toMatchObject({ ok: false, error: { code: 'FILE_EXISTS' } });
    expect(readFileSync(file, 'utf8')).toBe(token);
    const forced = await pollen(['token', 'generate', '-s', 'hospital-3', '-c', ca, '-o', file, '--force']);
    expect(forced.code).toBe(0);
    expect(readFileSync(file, 'utf8')).not.toBe(token);
    expect(mode(file)).toBe(0o600);
  });

  it('user, relay and server tokens; the role comes from -r or the policy default', async () => {
    const user = await pollen(['token', 'generate', '-s', 'admin@example.com', '--user', '-c', ca, '--json']);
    expect(user.code).toBe(0);
    expect((await verifyWithJose(user.json()['token'] as string)).payload['pollen']).toMatchObject({
      subject_type: 'user',
      roles: ['lead'],
    });
    const member = await generate('r@example.com', ['--user', '-r', 'member', '-c', ca, '--json']);
    expect((await verifyWithJose(member.json()['token'] as string)).payload['pollen']).toMatchObject({
      roles: ['member'],
    });
    const relay = await pollen(['token', 'generate', '-s', 'relay-1', '--relay', '-c', ca, '--json']);
    expect(relay.json()['subjectType']).toBe('relay');
    const server = await generate('superlink.example.com', ['--server', '-c', ca, '--json']);
    expect(server.json()['subjectType']).toBe('server');
  });

  it('usage errors exit 2', async () => {
    expect((await pollen(['token', 'generate', '-s', 'x', '--user', '--relay', '-c', ca])).code).toBe(
      ExitCode.USAGE,
    );
    expect((await pollen(['token', 'generate', '-c', ca])).code).toBe(ExitCode.USAGE);
    expect(
      (await pollen(['token', 'generate', '-s', 'a@b.org', '--user', '-r', 'project_admin', '-c', ca])).code,
    ).toBe(ExitCode.USAGE);
    const role = await pollen(['token', 'generate', '-s', 'hospital-1', '-r', 'lead', '-c', ca, '--json']);
    expect(role.code).toBe(ExitCode.USAGE);
    expect(role.json()).toMatchObject({ ok: false, error: { code: 'USAGE' } });
    const bad = await pollen(['token', 'generate', '-s', '../escape', '-c', ca, '--json']);
    expect(bad.code).toBe(ExitCode.USAGE);
    expect(bad.json()).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
    const notEmail = await pollen(['token', 'generate', '-s', 'alice', '--user', '-c', ca]);
    expect(notEmail.code).toBe(ExitCode.USAGE);
  });

  it('without a CA: CA_NOT_FOUND "CA path is required" (exit 4); POLLEN_CA_PATH works', async () => {
    const r = await pollen(['token', 'generate', '-s', 'hospital-1']);
    expect(r.code).toBe(ExitCode.NOT_FOUND);
    expect(r.stderr).toContain('error[CA_NOT_FOUND]: CA path is required');
    expect(r.stderr).toContain('POLLEN_CA_PATH');
    const j = await pollen(['token', 'generate', '-s', 'hospital-1', '--json']);
    expect(j.json()).toMatchObject({
      ok: false,
      error: { code: 'CA_NOT_FOUND', message: 'CA path is required' },
    });
    const missing = await generate('hospital-1', ['-c', join(dir, 'nope'), '--json']);
    expect(missing.code).toBe(ExitCode.NOT_FOUND);
    expect((missing.json()['error'] as { message: string }).message).toContain(join(dir, 'nope'));
    const env = await pollen(['token', 'generate', '-s', 'hospital-1'], { env: { POLLEN_CA_PATH: ca } });
    expect(env.code).toBe(0);
    expect((await verifyWithJose(env.stdout.trim())).payload.sub).toBe('hospital-1');
  });

  it('applies the policy from -p or POLLEN_ENROLLMENT_POLICY', async () => {
    const policy = join(dir, 'hospitals.yaml');
    const ok = await pollen(['token', 'generate', '-s', 'hospital-9', '-c', ca, '-p', policy, '--json']);
    expect(ok.code).toBe(0);
    const { payload } = await verifyWithJose(ok.json()['token'] as string);
    expect(payload['pollen']).toMatchObject({ max_uses: 2, policy: { project: 'hospitals', version: '3' } });
    expect((payload.exp as number) - (payload.iat as number)).toBe(12 * 3600);
    const sha = (payload['pollen'] as { policy: { sha256: string } }).policy.sha256;
    expect(sha).toBe(
      (await import('node:crypto')).createHash('sha256').update(readFileSync(policy)).digest('hex'),
    );
    const site = await pollen(['token', 'generate', '-s', 'clinic-1', '-c', ca, '--json'], {
      env: { POLLEN_ENROLLMENT_POLICY: policy },
    });
    expect(site.code).toBe(ExitCode.REJECTED);
    expect(site.json()).toMatchObject({ error: { code: 'POLICY_SITE_NAME' } });
    const role = await generate('a@b.org', ['--user', '-r', 'lead', '-c', ca, '-p', policy]);
    expect(role.code).toBe(ExitCode.INVALID_INPUT);
    expect(role.stderr).toContain('POLICY_ROLE');
    const badPolicy = join(dir, 'bad.yaml');
    writeFileSync(
      badPolicy,
      'metadata: {project: p}\napproval:\n  rules:\n    - {name: r, match: {}, action: yes}\n',
    );
    const bad = await pollen(['token', 'generate', '-s', 'x-1', '-c', ca, '-p', badPolicy]);
    expect(bad.code).toBe(ExitCode.INVALID_INPUT);
    expect(bad.stderr).toContain(
      'approval.rules[0].action (line 4): must be one of approve, reject, pending',
    );
  });
});

describe('pollen token batch (local mode)', () => {
  /** `pollen token batch` with `more` flags, on the test CA, writing to `out`. */
  const batch = (out: string, ...more: string[]) => pollen(['token', 'batch', ...more, '-c', ca, '-o', out]);

  it('-n with --prefix writes a 0600 CSV', async () => {
    const out = join(dir, 'tokens.csv');
    const r = await batch(out, '-n', '5', '--prefix', 'hospital', '--json');
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({
      ok: true,
      output: out,
      format: 'csv',
      count: 5,
      subjectType: 'client',
      mode: 'local',
      policy: { source: 'built-in', project: 'pollen-default' },
    });
    expect(mode(out)).toBe(0o600);
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines[0]).toBe('subject,token_id,subject_type,expires_at,token');
    expect(lines).toHaveLength(6);
    const rows = lines.slice(1).map((l) => l.split(','));
    expect(rows.map((r) => r[0])).toEqual([
      'hospital-1',
      'hospital-2',
      'hospital-3',
      'hospital-4',
      'hospital-5',
    ]);
    for (const [subject, id, type, expires, token] of rows) {
      const { payload } = await verifyWithJose(token!);
      expect(payload).toMatchObject({ sub: subject, jti: id });
      expect(type).toBe('client');
      expect(new Date(expires!).getTime()).toBe((payload.exp as number) * 1000);
    }
  });

  it('--names with --user writes "subject token" lines to a .txt', async () => {
    const out = join(dir, 'users.txt');
    const r = await batch(out, '--names', 'alice@org.com', 'bob@org.com', '--user', '-r', 'member');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('2 user tokens');
    expect(mode(out)).toBe(0o600);
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines.map((l) => l.split(' ')[0])).toEqual(['alice@org.com', 'bob@org.com']);
    for (const l of lines) {
      const [subject, token] = l.split(' ');
      const { payload } = await verifyWithJose(token!);
      expect(payload).toMatchObject({ sub: subject, pollen: { subject_type: 'user', roles: ['member'] } });
    }
  });

  it('a path ending in / gets one NAME.token file each (0600, the token alone)', async () => {
    const out = join(dir, 'kube');
    const r = await batch(`${out}/`, '--names', 'site-a', 'site-b', 'site-c', '--relay');
    expect(r.code).toBe(0);
    expect(mode(out)).toBe(0o700);
    expect(readdirSync(out).sort()).toEqual(['site-a.token', 'site-b.token', 'site-c.token']);
    for (const f of readdirSync(out)) {
      const file = join(out, f);
      expect(mode(file)).toBe(0o600);
      const token = readFileSync(file, 'utf8');
      expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/); // no newline: ready for --from-file
      expect((await verifyWithJose(token)).payload).toMatchObject({
        sub: f.replace(/\.token$/, ''),
        pollen: { subject_type: 'relay' },
      });
    }
    // An existing folder without the slash is a folder too; existing files are refused.
    const again = await batch(out, '--names', 'site-c', 'site-d', '--relay', '--json');
    expect(again.code).toBe(ExitCode.CONFLICT);
    expect(existsSync(join(out, 'site-d.token'))).toBe(false);
    const more = await batch(out, '--names', 'site-d', '--relay');
    expect(more.code).toBe(0);
    expect(existsSync(join(out, 'site-d.token'))).toBe(true);
  });

  it('refuses duplicates, names that escape the folder, and bad options (nothing written)', async () => {
    const out = join(dir, 'refused');
    const cases: Array<[string[], number]> = [
      [['--names', 'a-1', 'a-2', 'a-1'], ExitCode.USAGE],
      [['--names', '../evil'], ExitCode.USAGE],
      [['--names', 'a/b'], ExitCode.USAGE],
      [['--names', '..'], ExitCode.USAGE],
      [['-n', '2', '--names', 'a-1'], ExitCode.USAGE],
      [['-n', '0'], ExitCode.USAGE],
      [['-n', 'ten'], ExitCode.USAGE],
      [['--names', 'a-1', '--prefix', 'x'], ExitCode.USAGE],
      [[], ExitCode.USAGE],
    ];
    for (const [args, code] of cases) {
      const r = await batch(`${out}/`, ...args, '--json');
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.json().ok).toBe(false);
    }
    expect(existsSync(out)).toBe(false);
    const ext = await batch(join(dir, 'tokens.json'), '-n', '2');
    expect(ext.code).toBe(ExitCode.USAGE);
    expect(ext.stderr).toContain('.csv');
  });

  it('10,000 tokens: timing, progress on stderr, every token distinct', async () => {
    const out = join(dir, 'big.csv');
    const t0 = performance.now();
    const r = await batch(out, '-n', '10000', '--json');
    const wall = performance.now() - t0;
    expect(r.code).toBe(0);
    const j = r.json() as Record<string, number> & { ok: boolean };
    console.log(
      `token batch -n 10000 (CSV): ${j['elapsedMs']} ms inside the CLI (signing ${j['signMs']} ms), ` +
        `${wall.toFixed(0)} ms wall clock for the whole process`,
    );
    expect(j['count']).toBe(10_000);
    expect(r.stderr).toContain('1000/10000 tokens signed');
    expect(r.stderr).toContain('10000/10000 tokens signed');
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(10_001);
    expect(lines[10_000]!.startsWith('client-10000,')).toBe(true);
    expect(new Set(lines.slice(1).map((l) => l.split(',')[1])).size).toBe(10_000);
    expect((await verifyWithJose(lines[5000]!.split(',')[4]!)).payload.sub).toBe('client-5000');

    const folder = join(dir, 'big-folder');
    const t1 = performance.now();
    const f = await batch(`${folder}/`, '-n', '10000', '--json');
    expect(f.code).toBe(0);
    console.log(
      `token batch -n 10000 (folder of files): ${(f.json() as Record<string, number>)['elapsedMs']} ms inside the CLI, ` +
        `${(performance.now() - t1).toFixed(0)} ms wall clock`,
    );
    expect(readdirSync(folder)).toHaveLength(10_000);
  });
});

describe('pollen token info', () => {
  let token: string;
  let tokenFile: string;

  beforeAll(async () => {
    const r = await pollen(['token', 'generate', '-s', 'hospital-1', '-c', ca]);
    token = r.stdout.trim();
    tokenFile = join(dir, 'info.token');
    writeFileSync(tokenFile, `${token}\n`);
  });

  it('shows the seed fields and more as JSON; signature not checked without a CA', async () => {
    const r = await pollen(['token', 'info', '-t', token, '--json']);
    expect(r.code).toBe(0);
    const j = r.json();
    expect(j).toMatchObject({
      ok: true,
      token_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      subject: 'hospital-1',
      subject_type: 'client',
      issuer: 'pollen:demo',
      issued_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      expires_at: expect.stringMatching(/Z$/),
      policy_project: 'pollen-default',
      policy_version: '1.0',
      roles: [],
      max_uses: 1,
      audience: 'pollen-cert-service',
      policy_sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      root_ca_fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      key_id: expect.any(String),
      expired: false,
      signature: 'not checked (no CA at hand)',
    });
  });

  it('reads the token from a file or stdin, and verifies with -c or POLLEN_CA_PATH', async () => {
    const file = await pollen(['token', 'info', '-t', tokenFile, '-c', ca, '--json']);
    expect(file.json()).toMatchObject({ subject: 'hospital-1', signature: 'verified' });
    const stdin = await pollen(['token', 'info', '-t', '-', '--json'], {
      input: token,
      env: { POLLEN_CA_PATH: ca },
    });
    expect(stdin.json()).toMatchObject({ subject: 'hospital-1', signature: 'verified' });
    const env = await pollen(['token', 'info', '--json'], { env: { POLLEN_ENROLLMENT_TOKEN: token } });
    expect(env.json()).toMatchObject({ subject: 'hospital-1' });
    const text = await pollen(['token', 'info', '-t', tokenFile, '-c', ca]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/subject\s+hospital-1/);
    expect(text.stdout).toMatch(/signature\s+verified/);
    expect(text.stdout).toMatch(/policy\s+pollen-default 1\.0/);
  });

  it('a token from another CA or a tampered one shows signature invalid', async () => {
    const other = await pollen(['token', 'info', '-t', token, '-c', otherCa, '--json']);
    expect(other.code).toBe(0);
    expect(other.json()['signature']).toBe('invalid');
    const [h, p, s] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    claims.sub = 'hospital-666';
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    const r = await pollen(['token', 'info', '-t', forged, '-c', ca, '--json']);
    expect(r.json()).toMatchObject({ subject: 'hospital-666', signature: 'invalid' });
  });

  it('an expired token is shown as expired, its signature still verified', async () => {
    const key = createPrivateKey(readFileSync(join(ca, 'token.key')));
    const real = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    const kid = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid;
    const old = await new SignJWT({ ...real, iat: 1_700_000_000, nbf: 1_700_000_000, exp: 1_700_600_000 })
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'pollen-enroll+jwt' })
      .sign(key);
    const r = await pollen(['token', 'info', '-t', old, '-c', ca, '--json']);
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({
      expired: true,
      expires_at: '2023-11-21T20:53:20Z',
      signature: 'verified',
    });
  });

  it('garbage is TOKEN_INVALID (exit 5); a missing file is FILE_NOT_FOUND (exit 4)', async () => {
    const garbage = join(dir, 'garbage.token');
    writeFileSync(garbage, 'hello');
    const r = await pollen(['token', 'info', '-t', garbage, '--json']);
    expect(r.code).toBe(ExitCode.UNAUTHORIZED);
    expect(r.json()).toMatchObject({ ok: false, error: { code: 'TOKEN_INVALID' } });
    const m = await pollen(['token', 'info', '-t', join(dir, 'missing.token')]);
    expect(m.code).toBe(ExitCode.NOT_FOUND);
    expect((await pollen(['token', 'info'])).code).toBe(ExitCode.USAGE);
  });
});

describe('remote mode (a fake Certificate Service over real TLS)', () => {
  let server: Server;
  let url: string;
  const seen: Array<{
    auth: string | undefined;
    body: { subjects: string[]; type: string; role?: string };
    bytes: number;
  }> = [];

  /** `--cert-service URL --api-key KEY` for the fake service, then `more` flags. */
  const service = (key: string, ...more: string[]) => ['--cert-service', url, '--api-key', key, ...more];

  beforeAll(async () => {
    // A server certificate for 127.0.0.1 signed by the test root CA, with the Certificate
    // Service identity that clients trusting a project root require.
    const ext = join(dir, 'srv.ext');
    writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,URI:pollen://cli-test/service/cert-service\n');
    const { csr, keyPem } = opensslCsr(dir, '127.0.0.1');
    const cert = execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-CA',
        caCert(),
        '-CAkey',
        join(ca, 'rootCA.key'),
        '-CAcreateserial',
        '-days',
        '1',
        '-extfile',
        ext,
      ],
      { input: csr, stdio: ['pipe', 'pipe', 'ignore'] },
    );
    server = createServer({ key: keyPem, cert }, (req, res) => {
      let raw = '';
      req.on('data', (d) => {
        raw += d;
      });
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        const fail = (status: number, error: { code: string; message: string; hint: string }) => {
          res.statusCode = status;
          res.end(JSON.stringify({ error }));
        };
        if (req.url !== '/v1/tokens' || req.method !== 'POST')
          return fail(404, { code: 'INVALID_REQUEST', message: 'no such route', hint: '' });
        if (req.headers.authorization !== 'Bearer good-key')
          return fail(401, {
            code: 'API_KEY_INVALID',
            message: 'The API key is not valid',
            hint: 'Check it.',
          });
        const body = JSON.parse(raw);
        seen.push({ auth: req.headers.authorization, body, bytes: Buffer.byteLength(raw) });
        if (body.subjects.includes('forbidden-1'))
          return fail(403, {
            code: 'POLICY_SITE_NAME',
            message: 'Site name "forbidden-1" is not allowed',
            hint: 'Ask.',
          });
        res.end(
          JSON.stringify({
            tokens: body.subjects.map((s: string, i: number) => ({
              subject: s,
              token: `remote.${Buffer.from(s).toString('base64url')}.sig${i}`,
              tokenId: `id-${s}`,
              expiresAt: '2030-01-01T00:00:00Z',
            })),
          }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('generate calls POST /v1/tokens with the API key, trusting --ca-cert', async () => {
    seen.length = 0;
    const r = await generate(
      'admin@example.com',
      ['--user', '-r', 'member', '--cert-service', url, '--ca-cert', caCert(), '--json'],
      { env: { POLLEN_API_KEY: 'good-key' } },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toEqual({
      ok: true,
      subject: 'admin@example.com',
      token: expect.stringMatching(/^remote\./),
      tokenId: 'id-admin@example.com',
      subjectType: 'user',
      expiresAt: '2030-01-01T00:00:00Z',
      mode: 'remote',
      output: null,
    });
    expect(seen).toEqual([
      {
        auth: 'Bearer good-key',
        body: { subjects: ['admin@example.com'], type: 'user', role: 'member' },
        bytes: expect.any(Number),
      },
    ]);
  });

  it('trusts CA_PATH/rootCA.pem when -c is given, and env vars select remote mode', async () => {
    const r = await generate('hospital-1', ['--cert-service', url, '-c', ca], {
      env: { POLLEN_API_KEY: 'good-key' },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^remote\./);
    const env = await pollen(['token', 'generate', '-s', 'hospital-2'], {
      env: {
        POLLEN_CERT_SERVICE_URL: url,
        POLLEN_API_KEY: 'good-key',
        POLLEN_CA_CERT: caCert(),
      },
    });
    expect(env.code, env.stderr).toBe(0);
    expect(env.stdout.trim()).toMatch(/^remote\./);
  });

  it('batch splits large requests under the 64 KiB body limit and writes the CSV', async () => {
    seen.length = 0;
    const out = join(dir, 'remote.csv');
    const prefix = 'a-rather-long-site-name-prefix-for-chunking';
    const args = ['-n', '3000', '--prefix', prefix, '--ca-cert', caCert(), '-o', out, '--json'];
    const r = await pollen(['token', 'batch', ...args, ...service('good-key')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ count: 3000, mode: 'remote', format: 'csv' });
    expect(seen.length).toBeGreaterThan(1);
    for (const s of seen) expect(s.bytes).toBeLessThan(64 * 1024);
    expect(seen.flatMap((s) => s.body.subjects)).toHaveLength(3000);
    expect(mode(out)).toBe(0o600);
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(3001);
    expect(lines[1]).toMatch(
      /^a-rather-long-site-name-prefix-for-chunking-1,id-a-rather-long-site-name-prefix-for-chunking-1,client,2030-01-01T00:00:00Z,remote\./,
    );
  });

  it('maps service errors to the same code and exit code', async () => {
    const bad = await generate('h-1', service('wrong', '--ca-cert', caCert(), '--json'));
    expect(bad.code).toBe(ExitCode.UNAUTHORIZED);
    expect(bad.json()).toEqual({
      ok: false,
      error: { code: 'API_KEY_INVALID', message: 'The API key is not valid', hint: 'Check it.' },
    });
    const policy = await generate('forbidden-1', service('good-key', '--ca-cert', caCert()));
    expect(policy.code).toBe(ExitCode.REJECTED);
    expect(policy.stderr).toContain('error[POLICY_SITE_NAME]: Site name "forbidden-1" is not allowed');
  });

  it('missing API key, untrusted certificate, refused connection, http://', async () => {
    const noKey = await generate('h-1', ['--cert-service', url, '--json']);
    expect(noKey.code).toBe(ExitCode.UNAUTHORIZED);
    expect(noKey.json()).toMatchObject({ error: { code: 'API_KEY_REQUIRED' } });
    const untrusted = await generate('h-1', service('good-key', '--ca-cert', caCert(otherCa), '--json'));
    expect(untrusted.code).toBe(ExitCode.UNAUTHORIZED);
    expect(untrusted.json()).toMatchObject({ error: { code: 'TLS_FAILED' } });
    const systemRoots = await generate('h-1', service('good-key', '--json'));
    expect(systemRoots.json()).toMatchObject({ error: { code: 'TLS_FAILED' } });
    const refused = await generate('h-1', [
      '--cert-service',
      'https://127.0.0.1:1',
      '--api-key',
      'k',
      '--json',
    ]);
    expect(refused.code).toBe(ExitCode.UNAVAILABLE);
    expect(refused.json()).toMatchObject({ error: { code: 'UNAVAILABLE' } });
    const http = await generate('h-1', ['--cert-service', 'http://127.0.0.1:1', '--api-key', 'k', '--json']);
    expect(http.code).toBe(ExitCode.USAGE);
    expect(http.json()).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
    const withPolicy = await generate('h-1', service('good-key', '-p', 'x.yaml'));
    expect(withPolicy.code).toBe(ExitCode.USAGE);
  });
});

describe('help', () => {
  it('teaches with examples and lists the environment variables', async () => {
    for (const cmd of [['token'], ['token', 'generate'], ['token', 'batch']]) {
      const r = await pollen([...cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Examples:');
      for (const v of [
        'POLLEN_CA_PATH',
        'POLLEN_ENROLLMENT_POLICY',
        'POLLEN_CERT_SERVICE_URL',
        'POLLEN_API_KEY',
      ])
        expect(r.stdout, `${cmd.join(' ')} ${v}`).toContain(v);
    }
    const info = await pollen(['token', 'info', '--help']);
    expect(info.stdout).toContain('not checked (no CA at hand)');
  });
});

describe('the built CLI as a process', () => {
  it('issues a token that jose verifies and inspects it from a file, with exit codes and one JSON document', async () => {
    const file = join(dir, 'process.token');
    const made = await pollenAsync(
      ['token', 'generate', '-s', 'hospital-proc', '-c', ca, '-o', file, '--json'],
      {
        env: { POLLEN_CA_PATH: '' },
      },
    );
    expect(made.code, made.stderr).toBe(0);
    expect(made.json<{ ok: boolean }>().ok).toBe(true);
    const { payload } = await verifyWithJose(readFileSync(file, 'utf8').trim());
    expect(payload.sub).toBe('hospital-proc');
    const info = await pollenAsync(['token', 'info', '-t', file, '-c', ca, '--json']);
    expect(info.code, info.stderr).toBe(0);
    expect(info.json<{ signature: string }>().signature).toBe('verified');
    const missing = await pollenAsync(['token', 'info', '-t', join(dir, 'nope.token'), '--json']);
    expect(missing.code).toBe(ExitCode.NOT_FOUND);
    expect(missing.json<{ ok: boolean; error: { code: string } }>().error.code).toBe('FILE_NOT_FOUND');
  });
});
