import { explain, type SubjectType } from '../../enrollment/policy.js';
import { loadPolicy } from '../../enrollment/policy-load.js';
import { parseIp } from '../../enrollment/policy-match.js';
import { checkTokenHosts } from '../../enrollment/token.js';
import { PollenError } from '../../errors.js';
import { pc } from '../colors.js';
import type { Output } from '../output.js';
import { colorAction, policyFile, sourceOf } from './shared.js';

export interface PolicyExplainOptions {
  /** The policy FILE argument. */
  file?: string;
  /** POLLEN_ENROLLMENT_POLICY, for when FILE is left out. */
  policy?: string;
  /** The request: its subject name, source address and type. */
  site: string;
  ip: string;
  type: SubjectType;
  /** Server and relay requests: the hosts their token names (`--host`). */
  host?: string[];
}

/** `pollen policy explain`: what the policy decides for one request, and why. */
export async function policyExplain(f: PolicyExplainOptions, out: Output): Promise<void> {
  if (!parseIp(f.ip)) throw new PollenError('INVALID_ARGUMENT', `Not an IP address: "${f.ip}"`);
  const loaded = loadPolicy(policyFile(f.file, f));
  const hosts = checkTokenHosts(f.host ?? [], f.type);
  const ex = explain(loaded.policy, { name: f.site, type: f.type, ip: f.ip, hosts });
  const evaluated = ex.rules.length;
  const notEvaluated = ex.siteNameCheck.matched
    ? loaded.policy.approval.rules.slice(evaluated).map((r) => r.name)
    : [];
  const data = {
    source: sourceOf(loaded),
    sha256: loaded.sha256,
    request: { name: f.site, type: f.type, ip: f.ip, hosts },
    decision: ex.decision,
    siteNameCheck: ex.siteNameCheck,
    hostCheck: ex.hostCheck,
    rules: ex.rules,
    notEvaluated,
  };
  out.result(data, (d) => {
    const lines: string[] = [];
    const byRule = d.decision.rule ? ` by rule "${d.decision.rule}"` : '';
    lines.push(`decision: ${pc.bold(colorAction(d.decision.action))}${byRule}`);
    lines.push(`because:  ${d.decision.reason}`);
    lines.push('');
    const sc = d.siteNameCheck;
    if (!sc.applies) lines.push(`${pc.dim('-')} site.name_pattern does not apply to user subjects`);
    else
      lines.push(
        `${sc.matched ? pc.green('✓') : pc.red('✗')} site.name_pattern "${sc.pattern}" ${sc.matched ? 'matches' : 'does not match'} "${d.request.name}"`,
      );
    const hc = d.hostCheck;
    for (const h of hc.hosts) {
      const ok = !hc.refused.includes(h);
      lines.push(
        `${ok ? pc.green('✓') : pc.red('✗')} site.host_patterns (${hc.patterns.join(', ')}) ${ok ? 'allow' : 'do not allow'} host "${h}"`,
      );
    }
    for (const r of d.rules)
      lines.push(
        `${r.matched ? pc.green('✓') : pc.red('✗')} rule ${r.index} "${r.rule}" (${r.action}): ${r.matched ? 'matched' : 'no match'} — ${r.reason}`,
      );
    if (d.notEvaluated.length > 0)
      lines.push(pc.dim(`  not evaluated (an earlier rule matched): ${d.notEvaluated.join(', ')}`));
    lines.push(pc.dim(`policy ${d.source} (sha256 ${d.sha256.slice(0, 16)}…)`));
    return lines;
  });
}
