import type { Command } from 'commander';
import { action, lazy } from '../command.js';
import type { LoginOptions } from '../login/login.js';
import type { LogoutOptions } from '../login/logout.js';
import type { WhoAmIOptions } from '../login/whoami.js';

const login = lazy(() => import('../login/login.js'), 'login');
const logout = lazy(() => import('../login/logout.js'), 'logout');
const whoami = lazy(() => import('../login/whoami.js'), 'whoami');

export function registerLogin(program: Command): void {
  program
    .command('login [SUPERLINK]')
    .description('log in to a SuperLink with its OpenID Provider (device code: sign in in any browser)')
    .option(
      '--address <host:port>',
      "the SuperLink's Control API, for a SuperLink not configured yet (saved as SUPERLINK, default: default)",
    )
    .option(
      '--root-fingerprint <sha256>',
      "the project root's fingerprint the admin gave you (with --address)",
    )
    .option('--no-qr', 'do not print the QR code of the sign-in URL')
    .addHelpText(
      'after',
      `
The SuperLink names its OpenID Provider (or its connection entry does: issuer, client-id).
The tokens are kept in ~/.pollen/logins/SUPERLINK.json (0600) and refreshed when they expire;
while you are logged in, calls send your access token and no client certificate. One login
serves every federation on that SuperLink.

Examples:
  pollen login lab --address superlink.example.org:9093 --root-fingerprint sha256:3f5a…
  pollen login lab
  pollen login --json 2>codes.jsonl   # stderr: {"event":"login.code",…}; stdout: the result`,
    )
    .action(action<LoginOptions>((o, out, [federation]) => login({ ...o, federation }, out)));
  program
    .command('logout [SUPERLINK]')
    .description('revoke your refresh token at the identity provider and forget your tokens')
    .addHelpText(
      'after',
      `
Examples:
  pollen logout lab
  pollen logout --json`,
    )
    .action(action<LogoutOptions>((o, out, [federation]) => logout({ ...o, federation }, out)));
  program
    .command('whoami [SUPERLINK]')
    .description('who the SuperLink takes you for: subject, e-mail, organisation, roles, expiry')
    .addHelpText(
      'after',
      `
Examples:
  pollen whoami lab
  pollen whoami --json`,
    )
    .action(action<WhoAmIOptions>((o, out, [federation]) => whoami({ ...o, federation }, out)));
}
