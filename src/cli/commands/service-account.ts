import { type Command, Option } from 'commander';
import { action, lazy } from '../command.js';
import { apiKeyOption, caCertOption, loginOption } from '../env-options.js';

const serviceAccountCreate = lazy(() => import('../service-account/create.js'), 'serviceAccountCreate');
const serviceAccountList = lazy(() => import('../service-account/list.js'), 'serviceAccountList');
const serviceAccountRevoke = lazy(() => import('../service-account/revoke.js'), 'serviceAccountRevoke');

const collect = (v: string, prev: string[] = []) => [...prev, v];

/**
 * The Certificate Service's own accounts instead of the SuperLink's. Only the flag chooses it
 * (POLLEN_CERT_SERVICE_URL does not): without it, the accounts are the federation's.
 */
function certServiceOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--cert-service <url>',
        "the Certificate Service's accounts (https://HOST:8443) instead of the SuperLink's",
      ),
    )
    .addOption(loginOption())
    .addOption(apiKeyOption('with --cert-service: an admin API key (prefer the environment variable)'))
    .addOption(caCertOption('with --cert-service: the root CA to trust (default: system roots)'));
}

export function registerServiceAccount(program: Command): void {
  const cmd = program
    .command('service-account')
    .alias('sa')
    .description('manage service accounts: credentials for pipelines and schedulers')
    .addHelpText(
      'after',
      `
A service account has a name, roles, an organisation and an expiry; its secret (pollen_sa_…) is
shown once, when it is created, and the service keeps only its hash. A pipeline presents it in
POLLEN_TOKEN or in a file named by --token-file; what it does is recorded as sa:NAME. The
SuperLink and the Certificate Service (--cert-service URL) each keep their own accounts. Project
admins manage every account, org admins those of their organisation, and nobody gives an account
a right wider than their own. See docs/identity.md.`,
    );

  certServiceOptions(cmd.command('create <NAME> [SUPERLINK]'))
    .description('create a service account and print its secret (shown once)')
    .requiredOption(
      '-r, --role <role>',
      'a role of the account: project_admin, org_admin, lead, member (repeatable)',
      collect,
    )
    .option('--org <org>', 'its organisation (default: yours)')
    .option('--expires <when>', 'a duration (30d, 12h, 2w), a date (2027-06-30) or never', '90d')
    .addHelpText(
      'after',
      `
Examples:
  pollen service-account create nightly-train -r lead --org hospital-a --expires 30d
  pollen sa create ci-eval -r member --expires 2027-06-30 prod --json
  pollen sa create approver -r org_admin --org hospital-a --cert-service https://certs:8443 --login prod

The secret is printed once (with --json in the field "secret"): store it in the pipeline's
secret store. A lost secret cannot be shown again: revoke the account and create another.`,
    )
    .action(
      action<{ role: string[]; org?: string; expires: string }>((o, out, [name, federation]) =>
        serviceAccountCreate({ ...o, roles: o.role, name: name!, federation }, out),
      ),
    );

  certServiceOptions(cmd.command('list [SUPERLINK]'))
    .alias('ls')
    .description('list the service accounts you may manage (revoked and expired ones too)')
    .addHelpText(
      'after',
      `
Examples:
  pollen service-account list
  pollen sa ls prod --json`,
    )
    .action(action<object>((o, out, [federation]) => serviceAccountList({ ...o, federation }, out)));

  certServiceOptions(cmd.command('revoke <NAME> [SUPERLINK]'))
    .description('revoke a service account: its secret is refused from the next call on')
    .addHelpText(
      'after',
      `
Examples:
  pollen service-account revoke nightly-train
  pollen sa revoke ci-eval prod --json

A revoked account stays listed, and its name is not given to another account.`,
    )
    .action(
      action<object>((o, out, [name, federation]) =>
        serviceAccountRevoke({ ...o, name: name!, federation }, out),
      ),
    );
}
