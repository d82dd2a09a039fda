import { spawnSync } from 'node:child_process';
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
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, PollenError } from '../errors.js';
import { initCa } from '../pki/ca.js';
import {
  DEFAULT_BUILDERS,
  findPrivateKeys,
  formatEndpoint,
  KIT_PATHS,
  KitPlan,
  kitFolder,
  loadKit,
  parseEndpoint,
  planKit,
  resolveKitSpec,
  shellQuote,
  writeKit,
} from './kit.js';
import { DEFAULT_POLICY_YAML } from './policy.js';
import { parsePolicy } from './policy-load.js';
import { issueToken, loadTokenSigner } from './token.js';

let tmp: string;
let caDir: string;
let rootFingerprint: string;
const policy = parsePolicy(DEFAULT_POLICY_YAML);

function token(subject: string, type: 'client' | 'server' | 'relay' | 'user' = 'client', role?: string) {
  return issueToken(loadTokenSigner(caDir), { subject, type, policy, ...(role && { role }) }).token;
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof PollenError) return e.code;
    throw e;
  }
  return undefined;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pollen-kit-'));
  caDir = join(tmp, 'ca');
  rootFingerprint = (await initCa({ name: 'Kit Test', dir: caDir, keyType: 'ec-p256' })).rootFingerprint;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('parseEndpoint', () => {
  it('parses scheme, host, port and admin port', () => {
    expect(parseEndpoint('grpcs://server.example.com:9092')).toEqual({
      scheme: 'grpcs',
      host: 'server.example.com',
      port: 9092,
      adminPort: null,
    });
    expect(parseEndpoint('grpc://0.0.0.0:8002:8003', 'server')).toEqual({
      scheme: 'grpc',
      host: '0.0.0.0',
      port: 8002,
      adminPort: 8003,
    });
    expect(parseEndpoint('tcp://[::1]:9092:9093', 'admin')).toMatchObject({
      host: '::1',
      port: 9092,
      adminPort: 9093,
    });
    expect(parseEndpoint('https://10.1.2.3:443/')).toMatchObject({
      scheme: 'https',
      host: '10.1.2.3',
      port: 443,
    });
  });

  it('round-trips through formatEndpoint', () => {
    for (const e of ['grpcs://a.example:1', 'tcp://[fe80::1]:65535:2', 'https://h:8443'])
      expect(formatEndpoint(parseEndpoint(e))).toBe(e);
  });

  it.each([
    ['http://h:1', 'unsupported scheme'],
    ['grpcs://h', 'no port'],
    ['grpcs://h:0', 'port 0'],
    ['grpcs://h:65536', 'port too large'],
    ['grpcs://h:-1', 'negative port'],
    ['grpcs://h:1x', 'port not a number'],
    ['grpcs://bad_host!:1', 'bad host'],
    ['grpcs://[zz]:1', 'bad IPv6'],
    ['grpcs://h:1:2:3', 'too many ports'],
    ['h:1', 'no scheme'],
    ['grpcs://h:9092:9092', 'admin port equals port'],
  ])('refuses %s (%s)', (text) => {
    expect(code(() => parseEndpoint(text))).toBe('INVALID_ARGUMENT');
  });

  it('needs the admin port for servers and admins only', () => {
    expect(code(() => parseEndpoint('grpcs://h:9092', 'server'))).toBe('INVALID_ARGUMENT');
    expect(code(() => parseEndpoint('grpcs://h:9092', 'admin'))).toBe('INVALID_ARGUMENT');
    expect(parseEndpoint('grpcs://h:9092', 'client').adminPort).toBeNull();
    expect(parseEndpoint('grpcs://h:9092', 'relay').adminPort).toBeNull();
  });
});

describe('resolveKitSpec', () => {
  const base = { name: 'hospital-1', endpoint: 'grpcs://server:9092' };

  it('defaults to a client of org "org" and validates names, types and orgs', () => {
    const { spec } = resolveKitSpec(base);
    expect(spec).toMatchObject({
      type: 'client',
      org: 'org',
      role: null,
      enrollment: null,
      token: null,
      listening: null,
    });
    expect(code(() => resolveKitSpec({ ...base, name: '../evil' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => resolveKitSpec({ ...base, name: 'a b' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => resolveKitSpec({ ...base, type: 'worker' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => resolveKitSpec({ ...base, org: 'x"; rm -rf /' }))).toBe('INVALID_ARGUMENT');
  });

  it('takes a role for admins only, and admins are e-mail addresses', () => {
    const admin = { name: 'alice@example.com', type: 'admin', endpoint: 'grpcs://s:9092:9093' };
    expect(resolveKitSpec(admin).spec.role).toBe('lead');
    expect(resolveKitSpec({ ...admin, role: 'project_admin' }).spec.role).toBe('project_admin');
    expect(code(() => resolveKitSpec({ ...admin, role: 'king' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => resolveKitSpec({ ...base, role: 'lead' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => resolveKitSpec({ ...admin, name: 'alice' }))).toBe('INVALID_ARGUMENT');
  });

  it('gives relays and servers a listening address, and refuses one for clients', () => {
    expect(resolveKitSpec({ ...base, type: 'relay' }).spec.listening).toEqual({
      host: 'localhost',
      port: 9092,
    });
    expect(
      resolveKitSpec({ ...base, type: 'relay', listeningHost: '0.0.0.0', listeningPort: '8010' }).spec
        .listening,
    ).toEqual({ host: '0.0.0.0', port: 8010 });
    expect(
      resolveKitSpec({ name: 's1', type: 'server', endpoint: 'grpcs://s1:9092:9093' }).spec.listening,
    ).toEqual({
      host: '0.0.0.0',
      port: 9092,
    });
    expect(code(() => resolveKitSpec({ ...base, listeningPort: '8010' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => resolveKitSpec({ ...base, type: 'relay', listeningPort: '70000' }))).toBe(
      'INVALID_ARGUMENT',
    );
  });

  it('requires an https Certificate Service URL', () => {
    expect(resolveKitSpec({ ...base, certServiceUrl: 'https://certs:8443/' }).spec.enrollment).toEqual({
      certServiceUrl: 'https://certs:8443',
      rootCaFingerprint: null,
    });
    expect(code(() => resolveKitSpec({ ...base, certServiceUrl: 'http://certs:8443' }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(code(() => resolveKitSpec({ ...base, certServiceUrl: 'https://u:p@certs' }))).toBe(
      'INVALID_ARGUMENT',
    );
  });

  it('checks that the token is for this name and type, and pins its root', () => {
    const t = token('hospital-1');
    const { spec } = resolveKitSpec({ ...base, token: t, certServiceUrl: 'https://certs:8443' });
    expect(spec.token).toBe(t);
    expect(spec.enrollment?.rootCaFingerprint).toBe(rootFingerprint);
    const wrongName = (() => {
      try {
        resolveKitSpec({ ...base, token: token('hospital-2') });
      } catch (e) {
        return e as PollenError;
      }
    })();
    expect(wrongName?.code).toBe('TOKEN_SUBJECT_MISMATCH');
    expect(wrongName?.exitCode).toBe(ExitCode.INVALID_INPUT);
    expect(wrongName?.message).toMatch(/token is for client "hospital-2".*kit is for client "hospital-1"/);
    expect(code(() => resolveKitSpec({ ...base, type: 'relay', token: t }))).toBe('TOKEN_SUBJECT_MISMATCH');
    expect(code(() => resolveKitSpec({ ...base, token: 'not-a-jwt' }))).toBe('TOKEN_INVALID');
  });

  it('takes an admin role from the token and refuses a contradicting --role', () => {
    const admin = { name: 'bob@example.com', type: 'admin', endpoint: 'grpcs://s:9092:9093' };
    const t = token('bob@example.com', 'user', 'member');
    expect(resolveKitSpec({ ...admin, token: t }).spec.role).toBe('member');
    expect(code(() => resolveKitSpec({ ...admin, token: t, role: 'lead' }))).toBe('INVALID_ARGUMENT');
  });

  it('refuses a token from another project than the CA folder', () => {
    expect(
      code(() =>
        resolveKitSpec({
          ...base,
          token: token('hospital-1'),
          caRootFingerprint: `sha256:${'0'.repeat(64)}`,
        }),
      ),
    ).toBe('CA_FINGERPRINT_MISMATCH');
  });

  it('warns about an expired token', () => {
    const { warnings } = resolveKitSpec({
      ...base,
      token: token('hospital-1'),
      now: new Date(Date.now() + 30 * 86_400_000),
    });
    expect(warnings.join('\n')).toMatch(/expired/);
  });
});

describe('builders', () => {
  it('lay out a client kit like FLARE, with the config the runtime reads', async () => {
    const { spec } = resolveKitSpec({
      name: 'hospital-1',
      endpoint: 'grpcs://server:9092',
      org: 'General Hospital',
      certServiceUrl: 'https://certs:8443',
      token: token('hospital-1'),
    });
    const plan = await planKit(spec);
    expect(plan.files.map((f) => f.path)).toEqual([
      'local/authorization.json.default',
      'local/log_config.json.default',
      'local/privacy.json.sample',
      'local/resources.json.default',
      'readme.txt',
      'startup/enrollment.json',
      'startup/enrollment_token',
      'startup/fed_client.json',
      'startup/start.sh',
      'startup/stop.sh',
      'startup/sub_start.sh',
    ]);
    expect([...plan.dirs]).toEqual(expect.arrayContaining(['startup', 'local', 'transfer']));
    const config = JSON.parse(plan.get('startup/fed_client.json')!.content.toString());
    expect(config).toMatchObject({
      format: 'pollen-kit/v1',
      name: 'hospital-1',
      org: 'General Hospital',
      type: 'client',
      role: null,
      endpoint: { scheme: 'grpcs', host: 'server', port: 9092, adminPort: null },
      certificates: {
        cert: 'hospital-1.crt',
        key: 'hospital-1.key',
        rootCa: 'rootCA.pem',
        chain: 'chain.pem',
      },
    });
    expect(JSON.parse(plan.get('startup/enrollment.json')!.content.toString())).toEqual({
      certServiceUrl: 'https://certs:8443',
      rootCaFingerprint: rootFingerprint,
      name: 'hospital-1',
      type: 'client',
    });
    const tok = plan.get('startup/enrollment_token')!;
    expect(tok.mode).toBe(0o600);
    expect(tok.secret).toBe(true);
    for (const s of ['start.sh', 'sub_start.sh', 'stop.sh'])
      expect(plan.get(`startup/${s}`)!.mode).toBe(0o755);
    const readme = plan.get('readme.txt')!.content.toString();
    expect(readme).toMatch(/cp rootCA\.pem hospital-1\.crt hospital-1\.key startup\//);
    expect(readme).toMatch(/\.\/startup\/start\.sh/);
    expect(readme).toMatch(/enrollment_token/);
  });

  it('numbers the readme sections in order: the way this kit is set up for comes first', async () => {
    const sections = async (input: Partial<Parameters<typeof resolveKitSpec>[0]>) => {
      const { spec } = resolveKitSpec({ name: 'hospital-1', endpoint: 'grpcs://server:9092', ...input });
      const readme = (await planKit(spec)).get('readme.txt')!.content.toString();
      return readme.split('\n').filter((l) => /^\d\. /.test(l));
    };
    expect(await sections({})).toEqual([
      '1. Manual (small deployments, no Certificate Service):',
      '2. Auto-enrollment (large deployments):',
    ]);
    expect(await sections({ certServiceUrl: 'https://certs:8443' })).toEqual([
      '1. Auto-enrollment (large deployments) - this kit is set up for it:',
      '2. Manual (small deployments, no Certificate Service):',
    ]);
  });

  it('make the right files per type', async () => {
    const files = async (input: Parameters<typeof resolveKitSpec>[0]) =>
      (await planKit(resolveKitSpec(input).spec)).files.map((f) => f.path);
    expect(await files({ name: 's1', type: 'server', endpoint: 'grpcs://s1:9092:9093' })).toContain(
      'startup/fed_server.json',
    );
    const relay = await files({ name: 'r1', type: 'relay', endpoint: 'grpcs://s1:9092' });
    expect(relay).toContain('startup/fed_relay.json');
    expect(relay).not.toContain('local/privacy.json.sample');
    const admin = await files({ name: 'a@example.com', type: 'admin', endpoint: 'grpcs://s1:9092:9093' });
    expect(admin).toContain('startup/fed_admin.json');
    expect(admin).toContain('local/log_config.json.default');
    expect(admin).not.toContain('local/resources.json.default');
    expect(admin.some((p) => p.endsWith('.key'))).toBe(false);
  });

  it('write scripts that bash accepts and that quote recorded paths', async () => {
    const runtime = { node: "/opt/no'de dir/bin/node", bin: '/opt/$HOME `x`/bin/pollen.js' };
    const { spec } = resolveKitSpec({ name: 'site.a_b-1', endpoint: 'grpcs://server:9092', runtime });
    const plan = await planKit(spec);
    for (const name of ['start.sh', 'sub_start.sh', 'stop.sh']) {
      const text = plan.get(`startup/${name}`)!.content.toString();
      expect(text.startsWith('#!/usr/bin/env bash\n')).toBe(true);
      const r = spawnSync('bash', ['-n'], { input: text, encoding: 'utf8' });
      expect(r.status, `${name}: ${r.stderr}`).toBe(0);
    }
    const sub = plan.get('startup/sub_start.sh')!.content.toString();
    expect(sub).toContain(`DEFAULT_POLLEN_NODE=${shellQuote(runtime.node)}`);
    expect(sub).toContain(`DEFAULT_POLLEN_BIN=${shellQuote(runtime.bin)}`);
    expect(sub).toMatch(/2 \| 3 \| 5 \| 8 \| 9\)/);
    // The quoted value reads back verbatim in bash.
    const echoed = spawnSync('bash', ['-c', `printf %s ${shellQuote(runtime.node)}`], { encoding: 'utf8' });
    expect(echoed.stdout).toBe(runtime.node);
  });

  it('never plan a private key', () => {
    const plan = new KitPlan();
    expect(() => plan.file('startup/site.key', 'x')).toThrow(/private key/);
    expect(() => plan.file('../escape', 'x')).toThrow();
    plan.file('a.txt', 'x');
    expect(() => plan.file('a.txt', 'y')).toThrow(/Two kit builders/);
  });
});

describe('writeKit and loadKit', () => {
  async function plan(name = 'hospital-1', extra: Partial<Parameters<typeof resolveKitSpec>[0]> = {}) {
    return planKit(
      resolveKitSpec({ name, endpoint: 'grpcs://server:9092', ...extra }).spec,
      DEFAULT_BUILDERS,
    );
  }

  it('writes files with their modes and reads the kit back', async () => {
    const dir = join(tmp, 'w1', 'hospital-1');
    writeKit(dir, await plan('hospital-1', { token: token('hospital-1'), certServiceUrl: 'https://c:8443' }));
    expect(statSync(join(dir, 'startup/enrollment_token')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'startup/start.sh')).mode & 0o777).toBe(0o755);
    expect(statSync(join(dir, 'transfer')).isDirectory()).toBe(true);
    const kit = loadKit(dir);
    expect(kit.config.name).toBe('hospital-1');
    expect(kit.paths.cert).toBe(join(dir, 'startup', 'hospital-1.crt'));
    expect(kit.paths.key).toBe(join(dir, 'startup', 'hospital-1.key'));
    expect(kit.enrollment?.certServiceUrl).toBe('https://c:8443');
  });

  it('refuses an existing kit folder unless forced, and removes files the new kit no longer has', async () => {
    const dir = join(tmp, 'w2');
    writeKit(dir, await plan('n1', { token: token('n1'), certServiceUrl: 'https://c:8443' }));
    expect(code(() => writeKit(dir, new KitPlan()))).toBe('FILE_EXISTS');
    mkdirSync(join(dir, 'local/custom'), { recursive: true });
    writeFileSync(join(dir, 'local/custom/train.py'), 'print(1)\n');
    // A manifest of the old kit lists enrollment.json; the forced kit has none.
    writeFileSync(
      join(dir, 'startup/manifest.json'),
      JSON.stringify({ files: [{ path: 'startup/enrollment.json' }, { path: '../../etc/passwd' }] }),
    );
    writeKit(dir, await plan('n1'), { force: true });
    expect(existsSync(join(dir, 'startup/enrollment.json'))).toBe(false);
    expect(existsSync(join(dir, 'local/custom/train.py'))).toBe(true);
  });

  it('never writes into a folder holding private keys, even with --force', async () => {
    const dir = join(tmp, 'w3');
    mkdirSync(join(dir, 'startup'), { recursive: true });
    writeFileSync(join(dir, 'startup/hospital-1.key'), 'secret');
    chmodSync(join(dir, 'startup/hospital-1.key'), 0o600);
    expect(findPrivateKeys(dir)).toEqual(['startup/hospital-1.key']);
    let err: PollenError | undefined;
    try {
      writeKit(dir, await plan(), { force: true });
    } catch (e) {
      err = e as PollenError;
    }
    expect(err?.code).toBe('FILE_EXISTS');
    expect(err?.message).toMatch(/private keys/);
    expect(existsSync(join(dir, 'startup/fed_client.json'))).toBe(false);
  });

  it('refuses folders that are not kits', () => {
    const dir = join(tmp, 'notkit');
    mkdirSync(dir, { recursive: true });
    expect(code(() => loadKit(dir))).toBe('KIT_INVALID');
    mkdirSync(join(dir, 'startup'));
    expect(code(() => loadKit(dir))).toBe('KIT_INVALID');
    writeFileSync(join(dir, 'startup/fed_client.json'), '{"format":"pollen-kit/v1"}');
    expect(code(() => loadKit(dir))).toBe('KIT_INVALID');
  });

  it('refuses a config that points outside startup/', async () => {
    const dir = join(tmp, 'w4');
    writeKit(dir, await plan());
    const p = join(dir, 'startup/fed_client.json');
    const config = JSON.parse(readFileSync(p, 'utf8'));
    config.certificates.key = '../../victim.key';
    writeFileSync(p, JSON.stringify(config));
    expect(code(() => loadKit(dir))).toBe('KIT_INVALID');
  });

  it('puts -o at the folder itself and -w at WORKSPACE/NAME', () => {
    expect(kitFolder('n', { cwd: '/x' })).toBe('/x/n');
    expect(kitFolder('n', { cwd: '/x', output: 'out' })).toBe('/x/out');
    expect(kitFolder('n', { cwd: '/x', workspace: '/ws' })).toBe('/ws/n');
    expect(code(() => kitFolder('n', { output: 'a', workspace: 'b' }))).toBe('USAGE');
  });

  it('names its paths consistently', () => {
    expect(KIT_PATHS.token).toBe('startup/enrollment_token');
  });
});
