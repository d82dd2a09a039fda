/**
 * `pollen login`, `whoami`, `logout` driven through the CLI (in-process) against a real OpenID
 * Provider on 127.0.0.1 and a Control API over real TLS: trust bootstrapped from the root
 * fingerprint, the device grant (code shown, polling, slow_down), tokens stored 0600, silent
 * refresh, revocation on logout, and each failure with its code.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AccessTokens } from '../src/cli/login/access-token.js';
import { loginClock } from '../src/cli/login/clock.js';
import { fetchPinnedRoot } from '../src/cli/login/pinned-root.js';
import { certificateFingerprint } from '../src/pki/fingerprint.js';
import { pollenInProcess, tempDir } from './support/cli.js';
import { makePki, type Pki, TINY_APP, tlsOf } from './support/federation.js';
import { startInProcessLink } from './support/inproc.js';
import { cliLogin, type LoginControl, providerTokens, startLoginControl } from './support/login-control.js';
import { startTestProvider, type TestProvider } from './support/oidc-provider.js';

const t = tempDir('pollen-login-');
let pki: Pki;
let rootFingerprint: string;
let provider: TestProvider;
let control: LoginControl;

beforeAll(async () => {
  pki = await makePki(t.dir, 'logintest');
  rootFingerprint = certificateFingerprint(readFileSync(pki.server.ca, 'utf8'));
  provider = await startTestProvider({ slowDownPolls: 1 });
  control = await startLoginControl(tlsOf(pki.server), provider);
});
afterAll(async () => {
  await control?.close();
  await provider?.close();
  t.cleanup();
});

// The login clock: each wait of the device grant moves it on at once (no real seconds pass).
let now = Date.now();
let sleeps: number[] = [];
/** Extra time each wait takes on the login clock (a person who never comes). */
let lingerMs = 0;
beforeEach(() => {
  now = Date.now();
  sleeps = [];
  lingerMs = 0;
  vi.spyOn(loginClock, 'now').mockImplementation(() => now);
  vi.spyOn(loginClock, 'sleep').mockImplementation(async (ms) => {
    sleeps.push(ms);
    now += ms + lingerMs;
    await new Promise((r) => setTimeout(r, 5));
  });
});
afterEach(() => vi.restoreAllMocks());

/** `lab`, trusted by the root fingerprint (the way a person with no kit logs in). */
const pinned = (address = control.address, fingerprint = rootFingerprint) => [
  'lab',
  '--address',
  address,
  '--root-fingerprint',
  fingerprint,
];

let configN = 0;
const freshConfig = () => join(t.dir, `home-${++configN}`, 'config.toml');

/** `pollen login …` while a person signs in at the provider (support/login-control.ts). */
const login = cliLogin;

/** A fresh config, logged in to `lab` as ana. */
async function loggedIn(): Promise<string> {
  const config = freshConfig();
  const { r } = await login(config, pinned());
  expect(r.code, r.stderr).toBe(0);
  return config;
}

function stored(config: string, federation: string) {
  const file = join(config, '..', 'logins', `${federation}.json`);
  return { file, login: JSON.parse(readFileSync(file, 'utf8')) as Record<string, string | number> };
}

describe('pollen login', () => {
  it('pins the root by its fingerprint, signs in with the device code, stores the tokens 0600 and calls with them', async () => {
    const config = freshConfig();
    const { r, code } = await login(config, [
      'lab',
      '--address',
      control.address,
      '--root-fingerprint',
      rootFingerprint,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(code?.userCode).toMatch(/^[A-Z]{4}-[A-Z]{4}$/);
    expect(code?.verificationUri).toBe(`${provider.issuer}/device`);
    const doc = r.json<{
      superlink: string;
      subject: string;
      email: string;
      refreshable: boolean;
      tokenFile: string;
    }>();
    expect(doc).toMatchObject({
      ok: true,
      superlink: 'lab',
      subject: 'ana',
      email: 'ana@uni-a.example',
      refreshable: true,
    });
    // Polled at the provider's interval, 5 s longer after its slow_down.
    expect(sleeps.slice(0, 2)).toEqual([5_000, 10_000]);
    expect(provider.pendingPolls).toBeGreaterThanOrEqual(1);
    // Tokens: 0600 in a 0700 folder; the root saved as the federation's trust anchor.
    expect(statSync(doc.tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(doc.tokenFile, '..')).mode & 0o777).toBe(0o700);
    const cfg = readFileSync(config, 'utf8');
    expect(cfg).toContain(`address = "${control.address}"`);
    expect(certificateFingerprint(readFileSync(join(config, '..', 'roots', 'lab.pem'), 'utf8'))).toBe(
      rootFingerprint,
    );
    // Later calls carry the access token (and only it).
    const list = await pollenInProcess(['list', 'lab', '--config', config, '--json']);
    expect(list.code, list.stderr).toBe(0);
    expect(control.bearers.at(-1)).toBe(stored(config, 'lab').login.accessToken);
  });

  it('shows the URL, the code and a QR code as text, and says who logged in', async () => {
    const config = freshConfig();
    const first = await login(
      config,
      pinned(),
      {
        user: 'bo',
      },
      false,
    );
    expect(first.r.code, first.r.stderr).toBe(0);
    expect(first.r.stderr).toContain(`To sign in, open ${provider.issuer}/device`);
    expect(first.r.stderr).toMatch(/[▀▄█]{10}/); // the QR code
    expect(first.r.stderr).toContain('waiting for you to sign in');
    expect(first.r.stdout).toContain('logged in to lab as bo@uni-b.example');
  });

  it('whoami prints subject, e-mail, organisation, roles and expiry; --json has them too', async () => {
    const config = await loggedIn();
    const text = await pollenInProcess(['whoami', 'lab', '--config', config]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/subject\s+ana/);
    expect(text.stdout).toMatch(/e-mail\s+ana@uni-a\.example/);
    expect(text.stdout).toMatch(/organisation\s+uni-a/);
    expect(text.stdout).toMatch(/roles\s+lead, member/); // realm and client roles
    expect(text.stdout).toMatch(/expires\s+\d{4}-\d\d-\d\dT/);
    const json = await pollenInProcess(['whoami', 'lab', '--config', config, '--json']);
    expect(json.json()).toMatchObject({
      ok: true,
      superlink: 'lab',
      identity: {
        kind: 'user',
        subject: 'ana',
        email: 'ana@uni-a.example',
        org: 'uni-a',
        roles: ['lead', 'member'],
      },
    });
  });

  it('refreshes an expired access token silently, and saves the new one', async () => {
    const config = await loggedIn();
    const before = stored(config, 'lab').login;
    now = Number(before.expiresAt) + 1_000; // the access token has expired
    const r = await pollenInProcess(['whoami', 'lab', '--config', config, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const after = stored(config, 'lab');
    expect(after.login.accessToken).not.toBe(before.accessToken);
    expect(after.login.refreshToken).not.toBe(before.refreshToken); // rotated
    expect(Number(after.login.expiresAt)).toBeGreaterThan(now);
    expect(control.bearers.at(-1)).toBe(after.login.accessToken);
    expect(statSync(after.file).mode & 0o777).toBe(0o600);
  });

  it('two commands refreshing one login at once spend its rotated refresh token once', async () => {
    const config = await loggedIn();
    const { file, login: before } = stored(config, 'lab');
    now = Number(before.expiresAt) + 1_000;
    // Two commands of the same person, each with the login as it read it (a `log --stream` beside a `list`).
    const [a, b] = [AccessTokens.load(file)!, AccessTokens.load(file)!];
    const [ta, tb] = await Promise.all([a.current(), b.current()]);
    expect(ta).toBe(tb); // the second found the login the first refreshed
    expect(ta).not.toBe(before.accessToken);
    const after = stored(config, 'lab').login;
    expect(after.accessToken).toBe(ta);
    expect(existsSync(`${file}.lock`)).toBe(false);
    // The login goes on: its newest refresh token still works at the provider.
    expect(await provider.refreshTokenWorks(String(after.refreshToken))).toBe(true);
  });

  it('logout revokes the refresh token at the provider and forgets the tokens', async () => {
    const config = await loggedIn();
    const { file, login: tokens } = stored(config, 'lab');
    const r = await pollenInProcess(['logout', 'lab', '--config', config, '--json']);
    expect(r.json()).toMatchObject({ ok: true, superlink: 'lab', loggedOut: true, revoked: 'revoked' });
    expect(existsSync(file)).toBe(false);
    expect(await provider.refreshTokenWorks(String(tokens.refreshToken))).toBe(false);
    const again = await pollenInProcess(['logout', 'lab', '--config', config, '--json']);
    expect(again.json()).toMatchObject({ ok: true, loggedOut: false });
    // No login and no certificate: the CLI says to log in before it calls.
    const after = await pollenInProcess(['whoami', 'lab', '--config', config, '--json']);
    expect(after.code).toBe(5);
    expect(after.json()).toMatchObject({
      error: { code: 'LOGIN_REQUIRED', hint: 'Log in: pollen login lab' },
    });
  });

  it('logging in again revokes the previous refresh token at the provider, then keeps the new one', async () => {
    const config = await loggedIn();
    const first = stored(config, 'lab').login;
    const { r } = await login(config, ['lab'], { user: 'bo' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ ok: true, subject: 'bo', previousRevoked: 'revoked' });
    const second = stored(config, 'lab').login;
    expect(second.subject).toBe('bo');
    expect(second.refreshToken).not.toBe(first.refreshToken);
    // The old refresh token no longer refreshes; the new one does.
    expect(await provider.refreshTokenWorks(String(first.refreshToken))).toBe(false);
    expect(await provider.refreshTokenWorks(String(second.refreshToken))).toBe(true);
  });

  it('a login the provider no longer refreshes asks for a new login (LOGIN_REQUIRED)', async () => {
    const config = await loggedIn();
    const { login: tokens } = stored(config, 'lab');
    expect(await provider.refreshTokenWorks(String(tokens.refreshToken))).toBe(true); // used up: rotated
    now = Number(tokens.expiresAt) + 1_000;
    const r = await pollenInProcess(['whoami', 'lab', '--config', config, '--json']);
    expect(r.code).toBe(5);
    expect(r.json()).toMatchObject({ ok: false, error: { code: 'LOGIN_REQUIRED' } });
  });
});

describe('pollen login refusals', () => {
  it('refuses a root fingerprint no certificate of the server has, and saves nothing', async () => {
    const config = freshConfig();
    const wrong = `sha256:${'ab'.repeat(32)}`;
    const { r } = await login(config, pinned(control.address, wrong), 'nobody');
    expect(r.code).toBe(5);
    const doc = r.json<{ error: { code: string; message: string; hint: string; presented: string[] } }>();
    expect(doc.error.code).toBe('ROOT_FINGERPRINT_MISMATCH');
    expect(doc.error.hint).toMatch(/fingerprint/);
    expect(doc.error.presented).toContain(rootFingerprint); // what was seen, to compare
    expect(existsSync(config)).toBe(false);
  });

  it('refuses the fingerprint of the server certificate itself (not a root)', async () => {
    const leaf = certificateFingerprint(readFileSync(pki.server.cert, 'utf8'));
    const { r } = await login(freshConfig(), pinned(control.address, leaf), 'nobody');
    expect(r.json()).toMatchObject({ ok: false, error: { code: 'ROOT_FINGERPRINT_MISMATCH' } });
  });

  it('says so when the person presses Abort (LOGIN_DENIED)', async () => {
    const { r } = await login(freshConfig(), pinned(), {
      deny: true,
    });
    expect(r.code).toBe(5);
    expect(r.json()).toMatchObject({ ok: false, error: { code: 'LOGIN_DENIED' } });
  });

  it('gives up when the code expires before anyone signs in (LOGIN_EXPIRED)', async () => {
    lingerMs = 4 * 60_000;
    const { r } = await login(freshConfig(), pinned(), 'nobody');
    expect(r.code).toBe(5);
    const doc = r.json<{ error: { code: string; hint: string } }>();
    expect(doc.error.code).toBe('LOGIN_EXPIRED');
    expect(doc.error.hint).toMatch(/pollen login/);
  });

  it('names the identity provider it cannot reach (LOGIN_ISSUER_UNREACHABLE)', async () => {
    const gone = await startTestProvider();
    await gone.close();
    const config = freshConfig();
    const root = join(t.dir, 'root.pem');
    writeFileSync(root, readFileSync(pki.server.ca));
    const add = await pollenInProcess([
      'config',
      'superlink',
      'add',
      'lab',
      '--address',
      control.address,
      '--root-certificate',
      root,
      '--issuer',
      gone.issuer,
      '--client-id',
      'pollen-cli',
      '--config',
      config,
      '--json',
    ]);
    expect(add.code, add.stdout).toBe(0);
    const { r } = await login(config, ['lab'], 'nobody');
    expect(r.code).toBe(7);
    expect(r.json()).toMatchObject({ ok: false, error: { code: 'LOGIN_ISSUER_UNREACHABLE' } });
    expect(r.json<{ error: { message: string } }>().error.message).toContain(gone.issuer);
  });

  it('says when the SuperLink offers no login (LOGIN_NOT_OFFERED)', async () => {
    const plain = await startLoginControl(tlsOf(pki.server));
    try {
      const { r } = await login(freshConfig(), pinned(plain.address), 'nobody');
      expect(r.code).toBe(4);
      expect(r.json()).toMatchObject({ ok: false, error: { code: 'LOGIN_NOT_OFFERED' } });
    } finally {
      await plain.close();
    }
  });
});

describe('logging in to a real SuperLink', () => {
  it("sends its root in the Control API's chain, so a person with only the fingerprint can pin it", async () => {
    const link = await startInProcessLink('pollen-login-root-');
    try {
      const { rootPath } = await link.adminCert();
      const root = readFileSync(rootPath, 'utf8');
      const address = new URL(link.superlink.controlUrl).host;
      const pinned = await fetchPinnedRoot(address, certificateFingerprint(root));
      expect(pinned.pem.trim()).toBe(root.trim());
    } finally {
      await link.close();
    }
  });

  it('a login replaces the admin certificate of the federation on every call, until logout', async () => {
    const link = await startInProcessLink('pollen-login-link-', providerTokens(provider));
    try {
      const admin = await link.adminCert();
      const config = freshConfig();
      const address = new URL(link.superlink.controlUrl).host;
      const add = await pollenInProcess([
        'config',
        'superlink',
        'add',
        'lab',
        '--address',
        address,
        '--certificate',
        admin.certPath,
        '--private-key',
        admin.keyPath,
        '--root-certificate',
        admin.rootPath,
        '--config',
        config,
      ]);
      expect(add.code, add.stderr).toBe(0);
      const whoami = async () =>
        (await pollenInProcess(['whoami', 'lab', '--config', config, '--json'])).json<{
          identity: { kind: string; subject: string; org: string | null; roles: string[] };
        }>().identity;
      expect(await whoami()).toMatchObject({ kind: 'certificate', subject: 'admin@inproc' });
      // The SuperLink names the provider (GetLoginDetails, asked without a certificate).
      const { r } = await login(config, ['lab']);
      expect(r.code, r.stdout).toBe(0);
      expect(r.json()).toMatchObject({ subject: 'ana', certificateSetAside: true });
      // Only the token goes: the SuperLink refuses a call that carries both (IDENTITY_AMBIGUOUS).
      expect(await whoami()).toEqual(
        expect.objectContaining({ kind: 'user', subject: 'ana', org: 'uni-a', roles: ['lead', 'member'] }),
      );
      // The app bundle goes up the bulk chunk route with the token too, and the run is ana's.
      const run = await pollenInProcess(['run', TINY_APP, 'lab', '--config', config, '--json']);
      expect(run.code, run.stdout).toBe(0);
      const list = await pollenInProcess(['list', 'lab', '--config', config, '--json']);
      expect(list.json<{ runs: { createdBy: string }[] }>().runs.map((x) => x.createdBy)).toEqual([
        'ana@uni-a.example',
      ]);
      expect((await pollenInProcess(['logout', 'lab', '--config', config])).code).toBe(0);
      expect(await whoami()).toMatchObject({ kind: 'certificate' });
    } finally {
      await link.close();
    }
  });
});
