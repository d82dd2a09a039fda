/**
 * `pollen service-account create|list|revoke` in-process against a SuperLink in this process (real
 * mutual TLS on 127.0.0.1, an admin certificate): the secret printed once, with a warning, and as a
 * field with --json; lists without secrets; revocation; precise codes for bad input.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccountJson } from '../src/cli/service-account/format.js';
import { type CliResult, pollenInProcess, tempDir } from './support/cli.js';
import { type InProcessLink, startInProcessLink, writeFederationsFile } from './support/inproc.js';

const t = tempDir('pollen-sa-cli-');
const CONFIG = join(t.dir, 'pollen.toml');
let link: InProcessLink;

const cli = (args: string[]) => pollenInProcess(args, { env: { POLLEN_CONFIG: CONFIG } });

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
      federation: string;
      account: AccountJson;
      secret: string;
      warning: string;
    }>();
    expect(doc).toMatchObject({
      ok: true,
      federation: 'lab',
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
    expect(text.stdout).toMatch(/service account\(s\) in lab/);
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
});
