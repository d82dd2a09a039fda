import { type Command, Option } from 'commander';
import { SUBJECT_TYPES } from '../../enrollment/policy.js';
import { action, lazy } from '../command.js';
import { policyOption, smtpUrlOption } from '../env-options.js';
import type { PolicyCheckOptions } from '../policy/check.js';
import type { PolicyDefaultOptions } from '../policy/default.js';
import type { PolicyExplainOptions } from '../policy/explain.js';

const policyCheck = lazy(() => import('../policy/check.js'), 'policyCheck');
const policyDefault = lazy(() => import('../policy/default.js'), 'policyDefault');
const policyExplain = lazy(() => import('../policy/explain.js'), 'policyExplain');

/** Carries POLLEN_ENROLLMENT_POLICY for when FILE is left out; FILE is the way to name a policy. */
const policyEnv = () => policyOption('--policy <file>', 'the policy when FILE is left out').hideHelp();

const FILE_HELP = 'policy YAML (default: POLLEN_ENROLLMENT_POLICY, else the built-in policy)';

export function registerPolicy(program: Command): void {
  const policy = program
    .command('policy')
    .description('validate and explain enrollment policies (token validity, names, roles, approval rules)')
    .addHelpText(
      'after',
      `
An enrollment policy (YAML) sets token validity and uses, allowed site names and user roles, and the
approval rules the Certificate Service applies to each enrollment request: the first rule whose
match (site_name_pattern glob, source_ips CIDR list) fits decides approve, reject or pending; when
none fits, the request is rejected. site.host_patterns limits the DNS names and addresses a server
or relay certificate may name (token generate --host). Unknown fields are errors, never ignored.

Examples:
  pollen policy default -o enrollment_policy.yaml     start from the built-in policy
  pollen policy check enrollment_policy.yaml
  pollen policy explain enrollment_policy.yaml --site hospital-1 --ip 10.1.2.3

Environment: POLLEN_ENROLLMENT_POLICY names the policy when FILE is left out.`,
    );

  policy
    .command('check')
    .description('validate a policy file and summarise its rules (exit 3 when invalid)')
    .argument('[FILE]', FILE_HELP)
    .addHelpText(
      'after',
      `
Errors name the field and line, e.g.
  approval.rules[1].action (line 23): must be one of approve, reject, pending

The check also finds what the Certificate Service would refuse at start with its settings: give
the same --smtp-url (or POLLEN_SMTP_URL) and --admin-email as to \`pollen cert-service\`. A policy
that passes starts the service.

Examples:
  pollen policy check enrollment_policy.yaml
  pollen policy check enrollment_policy.yaml --smtp-url smtp://mail.example.com:25
  pollen policy check enrollment_policy.yaml --json     {source, sha256, project, version, policy}`,
    )
    .addOption(smtpUrlOption('the SMTP relay the Certificate Service will have (`cert-service --smtp-url`)'))
    .option('--admin-email <address>', 'the --admin-email the Certificate Service will have')
    .addOption(policyEnv())
    .action(action<PolicyCheckOptions>((f, out, [file]) => policyCheck({ ...f, file }, out)));

  policy
    .command('explain')
    .description('show what the policy decides for one request, and why')
    .argument('[FILE]', FILE_HELP)
    .requiredOption('--site <NAME>', 'the subject name (site name, or e-mail with --type user)')
    .requiredOption('--ip <ADDR>', 'the source IP address the Certificate Service would see')
    .addOption(new Option('--type <TYPE>', 'subject type').choices([...SUBJECT_TYPES]).default('client'))
    .option(
      '--host <HOST>',
      'server/relay: a DNS name or IP address the token names (repeatable; site.host_patterns)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .addOption(policyEnv())
    .addHelpText(
      'after',
      `
Prints the decision (approve, reject or pending), the rule that made it, and why each earlier rule
did not match. The exit code is 0 whatever the decision; read "decision.action" from --json.

Examples:
  pollen policy explain policy.yaml --site hospital-1 --ip 10.1.2.3
  pollen policy explain policy.yaml --site hospital-9 --ip ::ffff:192.0.2.7 --json
  pollen policy explain policy.yaml --site alice@example.com --type user --ip 203.0.113.5
  pollen policy explain policy.yaml --site superlink --type server --host superlink.example.com --ip 10.0.0.5`,
    )
    .action(
      action<Omit<PolicyExplainOptions, 'file'>>((f, out, [file]) => policyExplain({ ...f, file }, out)),
    );

  policy
    .command('default')
    .description('print the built-in policy (or write it with -o) as a starting point')
    .option('-o, --output <FILE>', 'write it to FILE')
    .option('-f, --force', 'overwrite FILE')
    .action(action<PolicyDefaultOptions>(policyDefault));
}
