import { type Command, Option } from 'commander';
import { action, lazy, namesAction } from '../command.js';
import type { EnrollmentAuditOptions } from '../enrollment/audit.js';
import type { EnrollmentEnrolledOptions } from '../enrollment/enrolled.js';
import type { EnrollmentListOptions } from '../enrollment/list.js';
import { apiKeyOption, caCertOption, caOption, certServiceOption, loginOption } from '../env-options.js';

const enrollmentApprove = lazy(() => import('../enrollment/approve.js'), 'enrollmentApprove');
const enrollmentAudit = lazy(() => import('../enrollment/audit.js'), 'enrollmentAudit');
const enrollmentEnrolled = lazy(() => import('../enrollment/enrolled.js'), 'enrollmentEnrolled');
const enrollmentList = lazy(() => import('../enrollment/list.js'), 'enrollmentList');
const enrollmentReject = lazy(() => import('../enrollment/reject.js'), 'enrollmentReject');
const enrollmentRevoke = lazy(() => import('../enrollment/revoke.js'), 'enrollmentRevoke');

const TYPES = ['client', 'server', 'relay', 'admin', 'user'];
const collect = (v: string, prev: string[] = []) => [...prev, v];

function serviceOptions(cmd: Command): Command {
  return cmd
    .addOption(certServiceOption())
    .addOption(apiKeyOption())
    .addOption(loginOption())
    .addOption(caCertOption())
    .addOption(caOption('CA folder whose rootCA.pem to trust'));
}

const typeOption = () => new Option('--type <type>', 'only this participant type').choices(TYPES);

/** `approve` and `reject`: pending requests chosen by names, --pattern and --type (`more` in between). */
function decision(
  enr: Command,
  verb: 'approve' | 'reject',
  description: string,
  example: string,
  more = (c: Command) => c,
): Command {
  const cmd = serviceOptions(enr.command(verb))
    .description(description)
    .argument('[names...]', 'site names, user e-mails or request ids')
    .option('--pattern <glob>', `${verb} every pending request whose name matches, e.g. "${example}"`);
  return more(cmd).addOption(typeOption());
}

export function registerEnrollment(program: Command): void {
  const enr = program
    .command('enrollment')
    .description('manage enrollment requests and enrolled participants on the Certificate Service')
    .addHelpText(
      'after',
      `
All subcommands talk to the Certificate Service's admin API:
  export POLLEN_CERT_SERVICE_URL=https://certs.example.com:8443
  export POLLEN_API_KEY=$(cat api_key.txt)   # or: export POLLEN_LOGIN=SUPERLINK (after pollen login)
  export POLLEN_CA_CERT=./ca/rootCA.pem
A service-account secret (POLLEN_TOKEN, --token-file) goes first, then the login, then the API key.`,
    );

  serviceOptions(enr.command('list'))
    .description('list enrollment requests (pending by default)')
    .addOption(
      new Option('--status <status>', 'which requests')
        .choices(['pending', 'approved', 'rejected', 'all'])
        .default('pending'),
    )
    .addOption(typeOption())
    .action(action<EnrollmentListOptions>(enrollmentList));

  decision(enr, 'approve', 'approve pending requests by name, request id or --pattern', 'hospital-*')
    .addHelpText(
      'after',
      '\nExamples:\n  pollen enrollment approve hospital-1 --type client\n  pollen enrollment approve --pattern "hospital-*" --type client',
    )
    .action(namesAction(enrollmentApprove));

  decision(enr, 'reject', 'reject pending requests, with a reason the site will see', 'test-*', (c) =>
    c.option('--reason <text>', 'why: shown to the site, in enrollment list and the audit log'),
  )
    .addHelpText(
      'after',
      '\nExamples:\n  pollen enrollment reject bad-site --type client --reason "Not authorized"\n  pollen enrollment reject --pattern "test-*" --reason "Test sites are not admitted"\n  pollen enrollment reject bad-site      # recorded as "rejected by an administrator"',
    )
    .action(namesAction(enrollmentReject));

  serviceOptions(enr.command('enrolled'))
    .description('list enrolled participants and their certificates')
    .addOption(typeOption())
    .option('--all', 'include revoked and expired certificates')
    .action(action<EnrollmentEnrolledOptions>(enrollmentEnrolled));

  serviceOptions(enr.command('revoke'))
    .description('revoke certificates by name or serial (they go on the CRL)')
    .argument('[names...]', 'participant names (all their valid certificates)')
    .option('--serial <hex>', 'a certificate serial (repeatable)', collect, [])
    .option('--reason <text>', 'recorded with the revocation', 'unspecified')
    .action(namesAction(enrollmentRevoke));

  serviceOptions(enr.command('audit'))
    .description('show the hash-chained audit log of the Certificate Service, and check the chain')
    .option('--after <seq>', 'only entries after this sequence number', '0')
    .option('--verify', 'fetch the whole log and check every hash from the first entry')
    .option('--expect-head <seq:hash>', 'fail unless this earlier recorded head is still part of the chain')
    .addHelpText(
      'after',
      `
Every issuance, approval, rejection, renewal, revocation and token batch is appended, in the same
transaction, as an entry whose hash covers the one before it. Keep the head printed by --verify
somewhere else; later, --expect-head SEQ:HASH proves nothing before it was rewritten.`,
    )
    .action(action<EnrollmentAuditOptions>(enrollmentAudit));
}
