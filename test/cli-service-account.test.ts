/**
 * `pollen service-account create|list|revoke` in-process against a SuperLink in this process (real
 * mutual TLS on 127.0.0.1, an admin certificate): the secret printed once, with a warning, and as a
 * field with --json; lists without secrets; revocation; precise codes for bad input. A pipeline's
 * secret (POLLEN_TOKEN, --token-file) goes before the federation's admin certificate: the run it
 * submits is the account's, and a revoked secret is refused.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccountJson } from '../src/cli/service-account/format.js';
import { type CliResult, pollenInProcess, tempDir } from './support/cli.js';
import { TINY_APP } from './support/federation.js';
import { type InProcessLink, startInProcessLink, writeFederationsFile } from './support/inproc.js';

const t = tempDir('pollen-sa-cli-');
const CONFIG = join(t.dir, 'pollen.toml');
let link: InProcessLink;

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  pollenInProcess(args, { env: { POLLEN_CONFIG: CONFIG, ...env } });

function ok(r: CliResult): CliResult {
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r;
}

/** The error of a failed --json command, its exit code checked. */
function failure(r: CliResult, exit: number) {
  expect(r.code, r.stdout + r.stderr).toBe(exit);
  const doc = r.json<{ ok: false; error: { code: string; message: string; hint: string } }>();
  expect(doc.ok).toBe(false);
  return doc.error;
}

beforeAll(async () => {
  link = await startInProcessLink('pollen-sa-cli-link-');
  await writeFederationsFile(link, CONFIG, 'lab');
}, 60_000);
afterAll(async () => {
  await link?.close();
  t.cleanup();
});

describe('pollen service-account', () => {
  it('creates an account and prints its secret once, with a warning; --json gives it as a field', async () => {
    const before = Date.now();
    const made = ok(
      await cli([
        'service-account',
        'create',
        'nightly',
        '-r',
        'lead',
        '-r',
        'member',
        '--org',
        'hospital-a',
        '--expires',
        '30d',
        '--json',
      ]),
    );
    const doc = made.json<{
      ok: true;
      superlink: string;
      account: AccountJson;
      secret: string;
      warning: string;
    }>();
    expect(doc).toMatchObject({
      ok: true,
      superlink: 'lab',
      account: {
        name: 'nightly',
        roles: ['lead', 'member'],
        org: 'hospital-a',
        status: 'active',
        createdBy: 'admin@inproc',
        revokedAt: null,
        lastUsedAt: null,
      },
      warning: expect.stringContaining('shown only now'),
    });
    expect(doc.secret).toMatch(/^pollen_sa_[A-Za-z0-9_-]{43}$/);
    const expires = Date.parse(doc.account.expiresAt!);
    expect(expires - before).toBeGreaterThanOrEqual(30 * 86_400_000);
    expect(expires - Date.now()).toBeLessThanOrEqual(30 * 86_400_000);
    expect(made.stderr).toContain('warning: the secret is shown only now');
    // The secret authenticates the account it names.
    expect(await link.superlink.state.serviceAccounts.authenticate(doc.secret)).toMatchObject({
      kind: 'service_account',
      name: 'sa:nightly',
      roles: ['lead', 'member'],
      org: 'hospital-a',
    });

    const text = ok(await cli(['sa', 'create', 'forever', '-r', 'member', '--expires', 'never']));
    const secret = /pollen_sa_[A-Za-z0-9_-]{43}/.exec(text.stdout)?.[0];
    expect(secret).toBeDefined();
    expect(text.stdout).toContain('created forever  member');
    expect(text.stdout).toContain('never expires');
    expect(text.stdout).toContain('POLLEN_TOKEN');
    expect(text.stderr).toContain('cannot show it again');
  });

  it('lists accounts without their secrets, and revokes one', async () => {
    const made = ok(
      await cli(['sa', 'create', 'to-revoke', '-r', 'member', '--expires', '2099-01-01', '--json']),
    );
    const { secret } = made.json<{ secret: string }>();
    const listed = ok(await cli(['service-account', 'list', 'lab', '--json']));
    expect(listed.stdout).not.toContain('pollen_sa_');
    const accounts = listed.json<{ accounts: AccountJson[] }>().accounts;
    expect(accounts.find((a) => a.name === 'to-revoke')).toMatchObject({
      status: 'active',
      expiresAt: '2099-01-01T00:00:00.000Z',
    });
    const revoked = ok(await cli(['sa', 'revoke', 'to-revoke', '--json']));
    expect(revoked.json<{ account: AccountJson }>().account).toMatchObject({
      name: 'to-revoke',
      status: 'revoked',
    });
    await expect(link.superlink.state.serviceAccounts.authenticate(secret)).rejects.toMatchObject({
      code: 'SERVICE_ACCOUNT_REVOKED',
    });
    const text = ok(await cli(['sa', 'ls']));
    expect(text.stdout).toMatch(/service account\(s\) on lab/);
    expect(text.stdout).toMatch(/to-revoke {2}member .*revoked 20/);
  });

  it('refuses bad input with precise codes, hints and exit codes (one JSON document each)', async () => {
    ok(await cli(['sa', 'create', 'taken', '-r', 'member', '--json']));
    expect(failure(await cli(['sa', 'create', 'taken', '-r', 'member', '--json']), 6)).toMatchObject({
      code: 'SERVICE_ACCOUNT_EXISTS',
      hint: expect.stringContaining('never reused'),
    });
    expect(failure(await cli(['sa', 'create', 'x', '-r', 'root', '--json']), 2)).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'Not a Pollen role: root',
    });
    expect(
      failure(await cli(['sa', 'create', 'x', '-r', 'member', '--expires', 'soon', '--json']), 2),
    ).toMatchObject({
      code: 'INVALID_ARGUMENT',
      hint: expect.stringContaining('30d'),
    });
    expect(
      failure(await cli(['sa', 'create', 'x', '-r', 'member', '--expires', '2001-01-01', '--json']), 2),
    ).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'The expiry 2001-01-01T00:00:00.000Z is not in the future',
    });
    expect(failure(await cli(['sa', 'revoke', 'nobody', '--json']), 4)).toMatchObject({
      code: 'SERVICE_ACCOUNT_NOT_FOUND',
    });
    expect(failure(await cli(['sa', 'create', 'x', '--json']), 2)).toMatchObject({ code: 'USAGE' });
  });

  it('a pipeline acts as its account with POLLEN_TOKEN or --token-file, instead of the admin certificate', async () => {
    const { secret } = ok(await cli(['sa', 'create', 'pipeline', '-r', 'lead', '--json'])).json<{
      secret: string;
    }>();
    const as = { POLLEN_TOKEN: secret };
    // Only the secret goes (the SuperLink would refuse it beside the certificate: IDENTITY_AMBIGUOUS).
    expect(ok(await cli(['whoami', '--json'], as)).json<{ identity: unknown }>().identity).toMatchObject({
      kind: 'service_account',
      subject: 'pipeline',
      name: 'sa:pipeline',
      roles: ['lead'],
    });
    expect(ok(await cli(['whoami'], as)).stdout).toContain('sa:pipeline on lab (service_account)');
    // The bundle goes up the bulk route with the secret too; the run is recorded as the account's.
    const run = ok(await cli(['run', TINY_APP, '--json'], as)).json<{ runId: string }>();
    const runs = ok(await cli(['list', '--json'], as)).json<{
      runs: { runId: string; createdBy: string }[];
    }>();
    expect(runs.runs.find((r) => r.runId === run.runId)?.createdBy).toBe('sa:pipeline');
    // A file wins over the variable; the lead has no right to manage accounts.
    const file = join(t.dir, 'secret');
    writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    const fromFile = ['whoami', '--json', '--token-file', file];
    expect(ok(await cli(fromFile, { POLLEN_TOKEN: 'pollen_sa_unknown' })).stdout).toContain('sa:pipeline');
    expect(failure(await cli(['sa', 'ls', '--json'], { POLLEN_TOKEN_FILE: file }), 5)).toMatchObject({
      code: 'RIGHT_MISSING',
    });
    // Without the secret the admin certificate is used again.
    expect(ok(await cli(['whoami', '--json'])).json<{ identity: unknown }>().identity).toMatchObject({
      kind: 'certificate',
    });
  });

  it('refuses a revoked or unknown secret with its code and exit code 5', async () => {
    const { secret } = ok(await cli(['sa', 'create', 'gone', '-r', 'member', '--json'])).json<{
      secret: string;
    }>();
    ok(await cli(['sa', 'revoke', 'gone']));
    expect(failure(await cli(['list', '--json'], { POLLEN_TOKEN: secret }), 5)).toMatchObject({
      code: 'SERVICE_ACCOUNT_REVOKED',
      hint: expect.stringContaining('pollen service-account create'),
    });
    const unknown = `pollen_sa_${'A'.repeat(43)}`;
    expect(failure(await cli(['list', '--json'], { POLLEN_TOKEN: unknown }), 5)).toMatchObject({
      code: 'SERVICE_ACCOUNT_INVALID',
    });
    expect(failure(await cli(['list', '--json'], { POLLEN_TOKEN: 'two words' }), 2)).toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });
});
