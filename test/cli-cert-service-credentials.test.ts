/**
 * The Certificate Service's admin commands take the credentials the Control commands take, in the
 * same order: a service-account secret (`--token-file`, POLLEN_TOKEN), the stored login named by
 * `--login SUPERLINK`, then the API key. Driven through the CLI (in-process) against a real
 * Certificate Service over HTTPS whose `[identity.oidc]` names a real OpenID Provider, with the
 * person logged in by the device flow. The service keeps its own service accounts: created with
 * `pollen service-account create --cert-service URL`, attributed by name, revoked at once.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { loginClock } from '../src/cli/login/clock.js';
import { certificateFingerprint } from '../src/pki/fingerprint.js';
import {
  type LiveCertService,
  opensslCsr,
  startLiveCertService,
  testPolicy,
} from './support/cert-service.js';
import { pollenInProcess, tempDir } from './support/cli.js';
import { makePki, tlsOf } from './support/federation.js';
import { cliLogin, type LoginControl, startLoginControl } from './support/login-control.js';
import { startTestProvider, type TestProvider } from './support/oidc-provider.js';

const t = tempDir('pollen-cs-creds-');
const KEY = `pollen_${'k'.repeat(43)}`;
const CERT_SERVICE_AUDIENCE = 'https://certs.test';
let provider: TestProvider;
let control: LoginControl;
let cs: LiveCertService;
/** bo (org admin of uni-b) logged in to `lab`. */
let config: string;
let url: string;
let ca: string;

beforeAll(async () => {
  const pki = await makePki(join(t.dir, 'pki'), 'credtest');
  // The CLI's tokens name the SuperLink and the Certificate Service (two audience mappers).
  provider = await startTestProvider({ extraAudiences: [CERT_SERVICE_AUDIENCE] });
  control = await startLoginControl(tlsOf(pki.server), provider);
  const identity = join(t.dir, 'identity.toml');
  writeFileSync(
    identity,
    [
      '[identity.oidc]',
      `issuer = "${provider.issuer}"`,
      `audience = "${CERT_SERVICE_AUDIENCE}"`,
      'client-id = "pollen-cli"',
      'algorithms = ["ES256"]',
    ].join('\n'),
  );
  cs = await startLiveCertService(join(t.dir, 'cs'), {
    name: 'Credentials',
    apiKey: KEY,
    policy: testPolicy(
      'creds',
      ['{ name: "all-wait", match: {}, action: pending }'],
      ['orgs: [uni-a, uni-b]'],
    ),
    identityConfig: identity,
  });
  url = `https://localhost:${cs.svc.port}`;
  ca = join(cs.caDir, 'rootCA.pem');
  config = join(t.dir, 'home', 'config.toml');
  vi.spyOn(loginClock, 'sleep').mockImplementation(() => new Promise((r) => setTimeout(r, 5)));
  const root = certificateFingerprint(readFileSync(pki.server.ca, 'utf8'));
  const { r } = await cliLogin(config, ['lab', '--address', control.address, '--root-fingerprint', root], {
    user: 'bo',
  });
  expect(r.code, r.stderr).toBe(0);
  vi.restoreAllMocks();
});
afterAll(async () => {
  await cs?.close();
  await control?.close();
  await provider?.close();
  t.cleanup();
});

beforeEach(() => {
  vi.spyOn(loginClock, 'sleep').mockImplementation(() => new Promise((r) => setTimeout(r, 5)));
});
afterEach(() => vi.restoreAllMocks());

/** `pollen ARGS --json` with only the given variables (no credential from this process leaks in). */
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  pollenInProcess([...args, '--config', config, '--json'], {
    clean: true,
    env: { POLLEN_CERT_SERVICE_URL: url, POLLEN_CA_CERT: ca, ...env },
  });

/** A site of `org` enrolled with a token bo issues through the CLI: pending, its name. */
let sites = 0;
async function pendingSite(
  org: string,
  by: string[] = ['--login', 'lab'],
  env: NodeJS.ProcessEnv = {},
): Promise<string> {
  const name = `site-${++sites}`;
  const out = join(t.dir, `${name}.token`);
  const gen = await cli(['token', 'generate', '-s', name, '--org', org, '-o', out, ...by], env);
  expect(gen.code, gen.stdout).toBe(0);
  const token = readFileSync(out, 'utf8').trim();
  const r = await cs.post('/v1/enroll', { token, csr: opensslCsr(t.dir, name).csr });
  expect(r.status).toBe(202);
  return name;
}

const decidedBy = async (name: string) => {
  const r = await cli(['enrollment', 'list', '--status', 'all', '--api-key', KEY]);
  return r
    .json<{ requests: { name: string; decidedBy: string | null }[] }>()
    .requests.find((x) => x.name === name)?.decidedBy;
};

describe('a login on the Certificate Service (--login SUPERLINK)', () => {
  it('issues tokens and decides requests as the logged-in person, within their organisation', async () => {
    const mine = await pendingSite('uni-b');
    // Another organisation's site (issued with the API key: bo may not issue for uni-a).
    const theirs = await pendingSite('uni-a', ['--api-key', KEY]);
    const refused = await cli(['token', 'generate', '-s', 'x-1', '--org', 'uni-a', '--login', 'lab']);
    expect(refused.json()).toMatchObject({ ok: false, error: { code: 'WRONG_ORGANISATION' } });

    const list = await cli(['enrollment', 'list', '--login', 'lab']);
    expect(list.code, list.stdout).toBe(0);
    const names = list.json<{ requests: { name: string }[] }>().requests.map((r) => r.name);
    expect(names).toContain(mine);
    expect(names).not.toContain(theirs); // an org admin sees their organisation only

    const approved = await cli(['enrollment', 'approve', mine, '--login', 'lab']);
    expect(approved.code, approved.stdout).toBe(0);
    expect(await decidedBy(mine)).toBe('user:bo@uni-b.example');
  });

  it('goes before the API key, and after a service-account secret', async () => {
    const a = await pendingSite('uni-b');
    expect((await cli(['enrollment', 'approve', a, '--login', 'lab', '--api-key', KEY])).code).toBe(0);
    expect(await decidedBy(a)).toBe('user:bo@uni-b.example');

    const created = await cli([
      'service-account',
      'create',
      'approver-b',
      '-r',
      'org_admin',
      '--cert-service',
      url,
      '--login',
      'lab',
    ]);
    expect(created.code, created.stdout).toBe(0);
    const { secret, certService } = created.json<{ secret: string; certService: string }>();
    expect(certService).toBe(url);
    const b = await pendingSite('uni-b');
    const bySecret = await cli(['enrollment', 'approve', b, '--login', 'lab'], { POLLEN_TOKEN: secret });
    expect(bySecret.code, bySecret.stdout).toBe(0);
    expect(await decidedBy(b)).toBe('sa:approver-b');
    // A file wins over the variable, as on the Control API.
    const file = join(t.dir, 'sa.secret');
    writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    const c = await pendingSite('uni-b');
    const byFile = await cli(['--token-file', file, 'enrollment', 'approve', c], {
      POLLEN_TOKEN: 'pollen_sa_unknown',
    });
    expect(byFile.code, byFile.stdout).toBe(0);
    expect(await decidedBy(c)).toBe('sa:approver-b');
  });

  it('refreshes an expired login before it calls', async () => {
    const file = join(config, '..', 'logins', 'lab.json');
    const before = JSON.parse(readFileSync(file, 'utf8')) as { accessToken: string; expiresAt: number };
    writeFileSync(file, JSON.stringify({ ...before, expiresAt: Date.now() - 1_000 }), { mode: 0o600 });
    const r = await cli(['enrollment', 'list', '--login', 'lab']);
    expect(r.code, r.stdout).toBe(0);
    expect(JSON.parse(readFileSync(file, 'utf8')).accessToken).not.toBe(before.accessToken);
  });

  it('says what to do without a credential, or with a login that is not there', async () => {
    const none = await cli(['enrollment', 'list']);
    expect(none.code).toBe(5);
    expect(none.json()).toMatchObject({
      ok: false,
      error: { code: 'API_KEY_REQUIRED', hint: expect.stringContaining('--login SUPERLINK') },
    });
    const other = await cli(['enrollment', 'list', '--login', 'elsewhere']);
    expect(other.json()).toMatchObject({
      ok: false,
      error: { code: 'LOGIN_REQUIRED', hint: 'Log in: pollen login elsewhere' },
    });
  });
});

describe("the Certificate Service's own service accounts", () => {
  const sa = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    cli(['service-account', ...args, '--cert-service', url], env);

  it('shows the secret once, keeps its hash, and refuses it once revoked', async () => {
    const created = await sa(['create', 'ci-issuer', '-r', 'org_admin', '--org', 'uni-b', '--api-key', KEY]);
    expect(created.code, created.stdout).toBe(0);
    const { secret, account } = created.json<{ secret: string; account: Record<string, unknown> }>();
    expect(secret).toMatch(/^pollen_sa_[A-Za-z0-9_-]{43}$/);
    expect(account).toMatchObject({
      name: 'ci-issuer',
      roles: ['org_admin'],
      org: 'uni-b',
      status: 'active',
    });
    // Only the hash is in the store.
    const db = new Database(join(t.dir, 'cs', 'ws', 'cert-service.db'), { readonly: true });
    try {
      const row = db.prepare('SELECT * FROM service_accounts WHERE name = ?').get('ci-issuer');
      expect(JSON.stringify(row)).not.toContain(secret.slice(10, 30));
    } finally {
      db.close();
    }
    // The secret issues tokens (attributed to the account), then is refused once revoked.
    await pendingSite('uni-b', [], { POLLEN_TOKEN: secret });
    const listed = await sa(['list'], { POLLEN_TOKEN: secret });
    expect(listed.json<{ accounts: { name: string }[] }>().accounts.map((a) => a.name)).toContain(
      'ci-issuer',
    );
    const audit = await cli(['enrollment', 'audit', '--api-key', KEY]);
    expect(JSON.stringify(audit.json())).toContain('sa:ci-issuer');
    expect((await sa(['revoke', 'ci-issuer', '--login', 'lab'])).code).toBe(0);
    const after = await cli(['enrollment', 'list'], { POLLEN_TOKEN: secret });
    expect(after.json()).toMatchObject({ ok: false, error: { code: 'SERVICE_ACCOUNT_REVOKED' } });
  });

  it("refuses a SuperLink's secret, a role wider than the creator's, and another organisation's account", async () => {
    const foreign = await cli(['enrollment', 'list'], { POLLEN_TOKEN: `pollen_sa_${'A'.repeat(43)}` });
    expect(foreign.json()).toMatchObject({ ok: false, error: { code: 'SERVICE_ACCOUNT_INVALID' } });
    const wide = await sa(['create', 'too-wide', '-r', 'project_admin', '--login', 'lab']);
    expect(wide.json()).toMatchObject({ ok: false, error: { code: 'SERVICE_ACCOUNT_ROLE_TOO_WIDE' } });
    const elsewhere = await sa(['create', 'a-admin', '-r', 'member', '--org', 'uni-a', '--login', 'lab']);
    expect(elsewhere.json()).toMatchObject({ ok: false, error: { code: 'WRONG_ORGANISATION' } });
  });
});
