import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type EnrollResult, enrollKit } from '../../enrollment/enroll-client.js';
import { formatEndpoint, loadKit } from '../../enrollment/kit.js';
import { kitVerificationError, verifyKit } from '../../enrollment/kit-manifest.js';
import { durationMs } from '../../enrollment/policy-match.js';
import { PollenError } from '../../errors.js';
import type { Output } from '../output.js';
import { startParticipant } from '../participants.js';

export interface StartOptions {
  kitDir: string;
  /** Stop once the certificate is there. */
  enrollOnly?: boolean;
  certService?: string;
  token?: string;
  /** Seconds or a duration (`30m`, `2h`, `1d`), as typed (checked here). */
  pollInterval?: string;
  /** How long to wait for approval or for the service (`--max-wait`, POLLEN_MAX_WAIT; default 24h). */
  maxWait?: string;
  renew: boolean;
}

/** Milliseconds of `value`: seconds (`90`, `0.5`) or a duration (`30m`, `2h`, `1d12h`). */
function waitMs(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  const ms = /^\d+(\.\d+)?$/.test(text) ? Math.round(Number(text) * 1000) : durationMs(text);
  if (ms === undefined)
    throw new PollenError(
      'INVALID_ARGUMENT',
      `${flag} takes seconds or a duration like 30m, 2h or 1d (got "${value}")`,
    );
  return ms;
}

/** FLARE's line, which operators look for in the log: printed as soon as the certificate is saved. */
function enrollmentLine(e: EnrollResult): string | undefined {
  if (e.action === 'enrolled') return `Enrollment successful. Certificate saved to: ${e.certificate.path}`;
  if (e.action === 'renewed') return `Certificate renewed. Certificate saved to: ${e.certificate.path}`;
  return undefined;
}

/** `pollen start`: enroll a startup kit when needed, then run its participant. */
export async function start(o: StartOptions, out: Output): Promise<void> {
  const kit = loadKit(o.kitDir);
  // A kit that was changed after it was made (an endpoint, a script) does not start.
  if (existsSync(join(kit.dir, 'startup', 'manifest.json'))) {
    const v = verifyKit(kit.dir, o.token !== undefined ? { token: o.token } : {});
    const problem = kitVerificationError(v, { allowUnsigned: true });
    if (problem) throw problem;
    if (v.signature === 'absent')
      out.warn('this kit is not signed; `pollen package verify` explains what that means');
  }
  const pollIntervalMs = waitMs(o.pollInterval, '--poll-interval');
  const maxWaitMs = waitMs(o.maxWait, '--max-wait');
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
  const saved = enrollmentLine(enrollment);
  // Before the participant starts, which may run for months: on stdout as text (the log), on
  // stderr with --json, whose stdout holds only the final document.
  if (saved) {
    if (out.json) out.progress(saved);
    else out.line(saved);
  }
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
      hosts: c.hosts,
    },
    rootCaFingerprint: enrollment.rootCaFingerprint,
    ...(enrollment.requestId !== undefined && { requestId: enrollment.requestId }),
    ...(enrollment.renewalError && { renewalError: enrollment.renewalError }),
    participant,
  };
  out.result(result, (r) => [
    r.participant.status === 'enrolled'
      ? `${r.type} "${r.name}" is enrolled (--enroll-only: not starting it)`
      : r.participant.status === 'ready'
        ? `${r.type} "${r.name}" is ready: ${r.type === 'admin' ? 'use this kit with the CLI (pollen config superlink add NAME --address HOST:9093 --kit DIR)' : 'this participant type runs no service of its own'}`
        : `${r.type} "${r.name}" stopped`,
    `  endpoint     ${r.endpoint}`,
    `  certificate  ${r.certificate.path}`,
    ...(r.certificate.hosts.length ? [`  reached at   ${r.certificate.hosts.join(', ')}`] : []),
    `  expires      ${r.certificate.notAfter}`,
    `  renewal from ${r.certificate.renewAt}`,
    ...(r.renewalError ? [`  renewal      failed: ${r.renewalError.message}`] : []),
  ]);
}
