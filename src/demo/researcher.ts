/**
 * `pollen demo --oidc`: the project's people log in with an OpenID Provider instead of holding
 * admin certificates. The demo starts an embedded provider (oidc-provider on 127.0.0.1) with one
 * researcher, and logs her in the way a person with no kit does: `pollen login` with the
 * SuperLink's address and root fingerprint, the device code signed in for her at the provider
 * (the demo says so: no browser is opened).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PollenError } from '../errors.js';
import { certificateFingerprint } from '../pki/fingerprint.js';
import { writeFileAtomic } from '../util/files.js';
import { actAsDeviceUser } from './device-user.js';
import { type EmbeddedProvider, startEmbeddedProvider } from './oidc-provider.js';
import type { Processes } from './processes.js';

/**
 * She holds no role of her own at the provider: what she may do comes from the federation she is
 * invited into. Her e-mail is verified (the provider says so), so an invitation can name it.
 */
export const DEMO_RESEARCHER = {
  sub: 'researcher',
  email: 'researcher@pollen-demo.example',
  emailVerified: true,
  name: 'Demo Researcher',
  org: 'pollen-demo',
  realmRoles: [],
};

/** The audience the demo SuperLink's access tokens name. */
export const DEMO_AUDIENCE = 'https://superlink.pollen-demo.example';

/** Where the demo's provider is (what `pollen demo oidc-provider` prints when it is ready). */
export type DemoProviderInfo = Pick<EmbeddedProvider, 'issuer' | 'audience' | 'clientId'>;

/** The SuperLink's `--identity-config` file: the embedded provider, and this SuperLink as its audience. */
export function writeDemoIdentityConfig(dir: string, provider: DemoProviderInfo): string {
  const file = join(dir, 'identity.toml');
  writeFileAtomic(
    file,
    [
      '# The identity provider whose access tokens this SuperLink accepts (docs/identity.md)',
      '[identity.oidc]',
      `issuer = ${JSON.stringify(provider.issuer)}`,
      `audience = ${JSON.stringify(provider.audience)}`,
      `client-id = ${JSON.stringify(provider.clientId)}`,
      '',
    ].join('\n'),
  );
  return file;
}

export function startDemoProvider(
  o: { port?: number; accessTokenTtl?: number } = {},
): Promise<EmbeddedProvider> {
  return startEmbeddedProvider({ audience: DEMO_AUDIENCE, users: [DEMO_RESEARCHER], ...o });
}

/**
 * `pollen login demo --address … --root-fingerprint …` into the researcher's own config file,
 * signing in for her when the CLI shows its code. Resolves with who logged in.
 */
export async function logInResearcher(
  px: Processes,
  o: { config: string; controlAddress: string; rootCa: string; onCode: (code: string, url: string) => void },
): Promise<{ email: string; command: string }> {
  const fingerprint = certificateFingerprint(readFileSync(o.rootCa, 'utf8'));
  const args = ['login', 'demo', '--address', o.controlAddress, '--root-fingerprint', fingerprint, '--json'];
  let signedIn: (v: unknown) => void = () => {};
  let failed: (e: unknown) => void = () => {};
  // A sign-in that fails ends the demo at once (the login would otherwise wait for its code to expire).
  const signIn = new Promise((res, rej) => {
    signedIn = res;
    failed = rej;
  });
  let started = false;
  const login = px.run(args, { POLLEN_CONFIG: o.config }, undefined, (line) => {
    if (started || !line.startsWith('{"event":"login.code"')) return;
    started = true;
    const code = JSON.parse(line) as { verificationUri: string; userCode: string };
    o.onCode(code.userCode, code.verificationUri);
    actAsDeviceUser({ ...code, login: DEMO_RESEARCHER.sub }).then(signedIn, failed);
  });
  const res = await Promise.race([login, signIn.then(() => login)]);
  if (res.code !== 0)
    throw new PollenError('INTERNAL', `\`pollen ${args.join(' ')}\` failed (exit ${res.code})`, {
      detail: (res.stdout || res.stderr).slice(-4000),
    });
  return {
    email: DEMO_RESEARCHER.email,
    command: `pollen login demo --address ${o.controlAddress} --root-fingerprint ${fingerprint.slice(0, 19)}…`,
  };
}
