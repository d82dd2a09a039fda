import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { enrollKit } from '../../enrollment/enroll-client.js';
import { formatEndpoint, loadKit } from '../../enrollment/kit.js';
import { kitVerificationError, verifyKit } from '../../enrollment/kit-manifest.js';
import { PollenError } from '../../errors.js';
import { action } from '../command.js';
import { startParticipant } from '../participants.js';

interface StartFlags {
  enrollOnly?: boolean;
  certService?: string;
  token?: string;
  pollInterval?: string;
  maxWait?: string;
  renew: boolean;
}

// ---------------------------------------------------------------------------------------------

function seconds(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0)
    throw new PollenError('INVALID_ARGUMENT', `${flag} takes a number of seconds (got "${value}")`);
  return Math.round(n * 1000);
}

const HELP = `
Without a valid certificate in startup/, the kit enrolls itself (FLARE's client auto-enrollment):
it pins the root CA from the token's fingerprint before sending anything, makes a P-256 key
(startup/NAME.key, 0600), sends a CSR with the token, waits for approval when the policy asks for
it (restart-safe: the same request is resumed), checks and saves startup/NAME.crt, rootCA.pem and
chain.pem. A certificate past two thirds of its life is renewed over mutual TLS. A valid
certificate is checked against the Certificate Service's revocation list (GET /v1/crl) when the
service is known; if the service cannot be reached, the kit starts with a warning. A single-use
startup/enrollment_token is removed once it is spent.

Token: --token, POLLEN_ENROLLMENT_TOKEN or startup/enrollment_token.
Certificate Service: --cert-service, POLLEN_CERT_SERVICE_URL or startup/enrollment.json.
Exit codes: 0 ready, 3 token for another participant (TOKEN_SUBJECT_MISMATCH), 5 token
missing/invalid, root mismatch or certificate revoked (CERT_REVOKED), 8 still pending after
--max-wait, 9 rejected, 7 service unavailable after --max-wait.`;

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
    .option(
      '--max-wait <SECONDS>',
      'give up waiting for approval or for the service after this long (default: never)',
    )
    .option('--no-renew', 'do not renew a certificate that is due for renewal')
    .addHelpText('after', HELP)
    .action(
      action<StartFlags>(async (o, out, args) => {
        const kit = loadKit(args[0]!);
        // A kit that was changed after it was made (an endpoint, a script) does not start.
        if (existsSync(join(kit.dir, 'startup', 'manifest.json'))) {
          const v = verifyKit(kit.dir, o.token !== undefined ? { token: o.token } : {});
          const problem = kitVerificationError(v, { allowUnsigned: true });
          if (problem) throw problem;
          if (v.signature === 'absent')
            out.warn('this kit is not signed; `pollen package verify` explains what that means');
        }
        const pollIntervalMs = seconds(o.pollInterval, '--poll-interval');
        const maxWaitMs = seconds(o.maxWait, '--max-wait');
        const enrollment = await enrollKit(kit, {
          ...(o.token !== undefined && { token: o.token }),
          ...(o.certService !== undefined && { certServiceUrl: o.certService }),
          ...(pollIntervalMs !== undefined && { pollIntervalMs }),
          ...(maxWaitMs !== undefined && { maxWaitMs }),
          renew: o.renew,
          onProgress: (e) => {
            if (e.kind === 'revocation-unchecked') out.warn(e.message);
            else if (e.kind !== 'issued') out.progress(e.message);
          },
        });
        const participant = o.enrollOnly
          ? ({ status: 'enrolled' } as const)
          : await startParticipant({ kit, enrollment, out });
        const c = enrollment.certificate;
        const result = {
          action: enrollment.action,
          name: kit.config.name,
          type: kit.config.type,
          org: kit.config.org,
          role: kit.config.role,
          kit: kit.dir,
          endpoint: formatEndpoint(kit.config.endpoint),
          certificate: {
            path: c.path,
            serial: c.serial,
            fingerprint: c.fingerprint,
            notBefore: c.notBefore.toISOString(),
            notAfter: c.notAfter.toISOString(),
            renewAt: c.renewAt.toISOString(),
          },
          rootCaFingerprint: enrollment.rootCaFingerprint,
          ...(enrollment.requestId !== undefined && { requestId: enrollment.requestId }),
          ...(enrollment.renewalError && { renewalError: enrollment.renewalError }),
          participant,
        };
        out.result(result, (r) => [
          ...(r.action === 'enrolled'
            ? [`Enrollment successful. Certificate saved to: ${r.certificate.path}`]
            : []),
          ...(r.action === 'renewed'
            ? [`Certificate renewed. Certificate saved to: ${r.certificate.path}`]
            : []),
          r.participant.status === 'enrolled'
            ? `${r.type} "${r.name}" is enrolled (--enroll-only: not starting it)`
            : r.participant.status === 'ready'
              ? `${r.type} "${r.name}" is ready: ${r.type === 'admin' ? 'use this kit with the CLI (pollen federation add NAME --address HOST:9093 --kit DIR)' : 'this participant type runs no service of its own'}`
              : `${r.type} "${r.name}" stopped`,
          `  endpoint     ${r.endpoint}`,
          `  certificate  ${r.certificate.path}`,
          `  expires      ${r.certificate.notAfter}`,
          `  renewal from ${r.certificate.renewAt}`,
          ...(r.renewalError ? [`  renewal      failed: ${r.renewalError.message}`] : []),
        ]);
      }),
    );
}
