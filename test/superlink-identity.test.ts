/**
 * `pollen superlink --identity-config FILE --access-policy FILE` as a process: it announces its
 * identity provider to people who are not logged in, accepts that provider's access tokens from a
 * caller without a certificate, applies the deployment's access policy, and refuses to start on a
 * bad policy or a file without `[identity.oidc]`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Control } from '../src/gen/pollen/v1/control_pb.js';
import { openChannel } from '../src/transport/rpc-client.js';
import { ensureBuilt } from './support/cli.js';
import { outcomeOf } from './support/errors.js';
import { makePki, type Pki, pollen, startSuperLink, stopAll } from './support/federation.js';
import { setHeaders } from './support/fleet-client.js';
import { startTestIssuer, type TestIssuer } from './support/test-issuer.js';

let dir: string;
let pki: Pki;
let issuer: TestIssuer;
let identity: string;

beforeAll(async () => {
  ensureBuilt('cli/main.js');
  dir = mkdtempSync(join(tmpdir(), 'pollen-superlink-identity-'));
  pki = await makePki(dir);
  issuer = await startTestIssuer({ audience: 'pollen-superlink' });
  identity = join(dir, 'identity.toml');
  writeFileSync(
    identity,
    [
      '[identity.oidc]',
      `issuer = "${issuer.url}"`,
      'audience = "pollen-superlink"',
      'client-id = "pollen-cli"',
      'algorithms = ["ES256"]',
      '[identity.oidc.claims]',
      'roles = ["roles"]',
      'org = "org"',
      '',
    ].join('\n'),
  );
}, 120_000);

afterAll(async () => {
  await stopAll();
  await issuer?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('pollen superlink with an identity provider and an access policy', () => {
  it('announces the provider, takes its tokens without a certificate, and applies the policy file', async () => {
    const policy = join(dir, 'access.yaml');
    // This deployment lets members submit runs too.
    writeFileSync(policy, 'project_admin:\n  run.view: any\nmember:\n  run.view: any\n  run.submit: any\n');
    const link = await startSuperLink({
      stateDir: join(dir, 'link'),
      pki,
      args: ['--identity-config', identity, '--access-policy', policy],
    });
    const call = async (token?: string) => {
      const channel = openChannel({
        baseUrl: link.controlUrl,
        tls: { ca: readFileSync(pki.server.ca, 'utf8') },
        interceptors: token ? [setHeaders({ authorization: `Bearer ${token}` })] : [],
      });
      return { control: channel.client(Control), close: () => channel.close() };
    };
    const anonymous = await call();
    expect(await anonymous.control.getLoginDetails({})).toMatchObject({
      issuer: issuer.url,
      clientId: 'pollen-cli',
      audience: 'pollen-superlink',
    });
    anonymous.close();
    const member = await call(await issuer.sign({ sub: 'm-1', roles: ['member'], org: 'Alpha' }));
    expect((await member.control.whoAmI({})).identity).toMatchObject({
      kind: 'user',
      subject: 'm-1',
      org: 'Alpha',
      roles: ['member'],
    });
    // Allowed by the file (the default policy would say RIGHT_MISSING): refused only for its content.
    expect(await outcomeOf(member.control.startRun({}))).toBe('INVALID_REQUEST');
    member.close();
    await link.stop();
  });

  it('does not start on an access policy with errors or an identity file without [identity.oidc]', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'leads:\n  run.view: any\n');
    const refused = await pollen([
      'superlink',
      '--json',
      '--insecure',
      '--state-dir',
      join(dir, 'bad-link'),
      '--access-policy',
      bad,
    ]);
    expect(JSON.parse(refused.stdout).error.code).toBe('ACCESS_POLICY_INVALID');
    const empty = join(dir, 'empty.toml');
    writeFileSync(empty, '[identity]\n');
    const noSection = await pollen([
      'superlink',
      '--json',
      '--insecure',
      '--state-dir',
      join(dir, 'bad-link'),
      '--identity-config',
      empty,
    ]);
    expect(JSON.parse(noSection.stdout).error).toMatchObject({
      code: 'CONFIG_INVALID',
      message: `${empty} has no [identity.oidc] section`,
    });
  });
});
