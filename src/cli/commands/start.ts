import { type Command, Option } from 'commander';
import { action, lazy } from '../command.js';
import type { StartOptions } from '../start/start.js';

const start = lazy(() => import('../start/start.js'), 'start');

const HELP = `
Without a valid certificate in startup/, the kit enrolls itself (FLARE's client auto-enrollment):
it pins the root CA from the token's fingerprint before sending anything, makes a P-256 key
(startup/NAME.key, 0600), sends a CSR with the token, waits for approval when the policy asks for
it (restart-safe: the same request is resumed), checks and saves startup/NAME.crt, rootCA.pem and
chain.pem. A certificate past two thirds of its life is renewed over mutual TLS. A valid
certificate is checked against the Certificate Service's revocation list (GET /v1/crl) when the
service is known; if the service cannot be reached, the kit starts with a warning. A single-use
startup/enrollment_token is removed once it is spent.

While a request waits for approval, the site prints its request id and the command an admin runs
(pollen enrollment approve REQUEST_ID --cert-service URL), then how long it has waited. It waits
24h by default (--max-wait, POLLEN_MAX_WAIT: seconds or 30m, 2h, 1d; 0 does not wait); a start
after that resumes the same request.

Token: --token, POLLEN_ENROLLMENT_TOKEN or startup/enrollment_token.
Certificate Service: --cert-service, POLLEN_CERT_SERVICE_URL or startup/enrollment.json.
Exit codes: 0 ready, 3 token for another participant (TOKEN_SUBJECT_MISMATCH), 5 token
missing/invalid, root mismatch or certificate revoked (CERT_REVOKED), 8 still pending after
--max-wait, 9 rejected, 7 service unavailable after --max-wait.`;

/** The documented limit on waiting for approval (or for the service) when nothing sets one. */
const DEFAULT_MAX_WAIT = '24h';

export function registerStart(program: Command): void {
  program
    .command('start <KIT_DIR>')
    .description('enroll a startup kit when needed, then start its participant')
    .option('--enroll-only', 'stop after making sure the certificate is there')
    .addOption(new Option('--cert-service <URL>', 'Certificate Service URL').env('POLLEN_CERT_SERVICE_URL'))
    .addOption(new Option('--token <TOKEN>', 'enrollment token').env('POLLEN_ENROLLMENT_TOKEN'))
    .option(
      '--poll-interval <SECONDS>',
      'first delay between approval polls (default: what the service asks)',
    )
    .addOption(
      new Option(
        '--max-wait <DURATION>',
        'give up waiting for approval or for the service after this long (seconds, or 30m, 2h, 1d)',
      )
        .env('POLLEN_MAX_WAIT')
        .default(DEFAULT_MAX_WAIT),
    )
    .option('--no-renew', 'do not renew a certificate that is due for renewal')
    .addHelpText('after', HELP)
    .action(
      action<Omit<StartOptions, 'kitDir'>>((o, out, [kitDir]) => start({ ...o, kitDir: kitDir! }, out)),
    );
}
