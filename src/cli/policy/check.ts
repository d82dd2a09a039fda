import Table from 'cli-table3';
import type { PolicyRule } from '../../enrollment/policy.js';
import { loadPolicy } from '../../enrollment/policy-load.js';
import { checkPoliciesForService } from '../../enrollment/policy-service.js';
import { pc } from '../colors.js';
import type { Output } from '../output.js';
import { colorAction, policyFile, sourceOf } from './shared.js';

export interface PolicyCheckOptions {
  /** The policy FILE argument. */
  file?: string;
  /** POLLEN_ENROLLMENT_POLICY, for when FILE is left out. */
  policy?: string;
  /** The Certificate Service's settings the policy depends on (`cert-service --smtp-url`, `--admin-email`). */
  smtpUrl?: string;
  adminEmail?: string;
}

function describeMatch(r: PolicyRule): string {
  const parts: string[] = [];
  parts.push(r.match.site_name_pattern !== undefined ? `name ${r.match.site_name_pattern}` : 'any name');
  parts.push(r.match.source_ips !== undefined ? `from ${r.match.source_ips.join(', ')}` : 'any IP');
  return parts.join(', ');
}

/** `pollen policy check`: validate a policy and summarise it (its rules as a table). */
export async function policyCheck(o: PolicyCheckOptions, out: Output): Promise<void> {
  const loaded = loadPolicy(policyFile(o.file, o));
  // What the service would refuse at start (the same function it runs).
  checkPoliciesForService([loaded], o);
  const p0 = loaded.policy;
  const summary = {
    source: sourceOf(loaded),
    sha256: loaded.sha256,
    project: p0.metadata.project,
    version: p0.metadata.version,
    policy: p0,
  };
  out.result(summary, (d) => {
    const p = d.policy;
    const n = p.notifications;
    const channels = Object.entries(n.channels)
      .filter(([, c]) => c?.enabled)
      .map(([k]) => k);
    const table = new Table({ head: ['#', 'rule', 'match', 'action'], style: { head: [], border: [] } });
    p.approval.rules.forEach((r, i) => {
      table.push([String(i), r.name, describeMatch(r), colorAction(r.action)]);
    });
    return [
      `${pc.green('✓')} valid enrollment policy ${pc.bold(d.source)}`,
      `  project         ${d.project} ${d.version}${p.metadata.description ? pc.dim(` — ${p.metadata.description}`) : ''}`,
      `  sha256          ${d.sha256}`,
      `  tokens          valid ${p.token.validity}, max ${p.token.max_uses} use${p.token.max_uses === 1 ? '' : 's'} each`,
      `  site names      ${p.site.name_pattern}`,
      `  server hosts    ${p.site.host_patterns.join(', ')}`,
      `  user roles      ${p.user.allowed_roles.join(', ')} (default ${p.user.default_role})`,
      `  notifications   ${n.enabled ? `on (${channels.join(', ')})` : 'off'}`,
      '  rules (first match wins; no match → reject):',
      table.toString(),
    ];
  });
}
