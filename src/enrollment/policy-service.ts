/**
 * What a policy asks of the Certificate Service that runs it: the one check the service makes at
 * start-up and `pollen policy check` makes beforehand, so a policy that passes the check starts.
 * Each problem names the policy field and the service flag that fix it.
 */

import { type LoadedPolicy, notificationTargets } from './policy.js';
import type { PolicyIssue } from './policy-load.js';
import { fieldLine, invalidPolicy } from './policy-load.js';

/** The service settings a policy can depend on (`pollen cert-service` flags). */
export interface PolicyServiceSettings {
  /** `--smtp-url` / POLLEN_SMTP_URL: the relay e-mail notifications go through. */
  smtpUrl?: string | undefined;
  /** `--admin-email`: recipients when the policy's e-mail channel lists none. */
  adminEmail?: string | undefined;
}

const EMAIL = ['notifications', 'channels', 'email'];

/** What the service would refuse in `loaded` with these settings (empty: it starts). */
export function policyServiceIssues(loaded: LoadedPolicy, s: PolicyServiceSettings): PolicyIssue[] {
  const issue = (path: string[], message: string): PolicyIssue => ({
    path: path.join('.'),
    line: fieldLine(loaded, path),
    message,
  });
  const email = notificationTargets(loaded.policy).email;
  if (!email) return [];
  const issues: PolicyIssue[] = [];
  if (!s.smtpUrl)
    issues.push(
      issue(
        [...EMAIL, 'enabled'],
        'e-mail is enabled but the service has no SMTP relay: start it with --smtp-url smtp://HOST:PORT (or POLLEN_SMTP_URL), or set this to false',
      ),
    );
  if (email.to.length === 0 && !s.adminEmail)
    issues.push(
      issue(
        [...EMAIL, 'to'],
        'lists no recipient and the service has no --admin-email: list addresses here, or start the service with --admin-email ADDRESS',
      ),
    );
  return issues.sort((a, b) => a.line - b.line);
}

/** Throw POLICY_INVALID naming every problem of the first policy the service could not run. */
export function checkPoliciesForService(policies: LoadedPolicy[], s: PolicyServiceSettings): void {
  for (const loaded of policies) {
    const issues = policyServiceIssues(loaded, s);
    if (issues.length > 0)
      throw invalidPolicy(loaded.source, issues, {
        title: `The Certificate Service cannot run enrollment policy ${loaded.source}`,
        hint: 'Change the field or give the service the flag named above; `pollen policy check FILE --smtp-url URL --admin-email ADDRESS` checks a policy with those settings.',
      });
  }
}
