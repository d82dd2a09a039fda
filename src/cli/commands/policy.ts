import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import Table from 'cli-table3';
import { type Command, Option } from 'commander';
import pc from 'picocolors';
import {
  DEFAULT_POLICY_YAML,
  explain,
  type LoadedPolicy,
  type PolicyRule,
  SUBJECT_TYPES,
  type SubjectType,
} from '../../enrollment/policy.js';
import { loadPolicy } from '../../enrollment/policy-load.js';
import { parseIp } from '../../enrollment/policy-match.js';
import { PollenError } from '../../errors.js';
import { writeFileAtomic } from '../../util/files.js';
import { action } from '../command.js';
import { policyOption } from '../env-options.js';
import type { Output } from '../output.js';

/** The FILE argument, else POLLEN_ENROLLMENT_POLICY (the hidden --policy option carries it). */
const policyFile = (file: string | undefined, o: { policy?: string }): string | undefined =>
  file ?? (o.policy || undefined);

/** Carries POLLEN_ENROLLMENT_POLICY for when FILE is left out; FILE is the way to name a policy. */
const policyEnv = () => policyOption('--policy <file>', 'the policy when FILE is left out').hideHelp();

function describeMatch(r: PolicyRule): string {
  const parts: string[] = [];
  parts.push(r.match.site_name_pattern !== undefined ? `name ${r.match.site_name_pattern}` : 'any name');
  parts.push(r.match.source_ips !== undefined ? `from ${r.match.source_ips.join(', ')}` : 'any IP');
  return parts.join(', ');
}

const colorAction = (a: string) =>
  a === 'approve' ? pc.green(a) : a === 'reject' ? pc.red(a) : pc.yellow(a);

function summary(l: LoadedPolicy) {
  const p = l.policy;
  return {
    source: l.source === 'built-in' ? 'built-in' : resolve(l.source),
    sha256: l.sha256,
    project: p.metadata.project,
    version: p.metadata.version,
    policy: p,
  };
}

async function check(file: string | undefined, o: { policy?: string }, out: Output) {
  const loaded = loadPolicy(policyFile(file, o));
  out.result(summary(loaded), (d) => {
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
      `  user roles      ${p.user.allowed_roles.join(', ')} (default ${p.user.default_role})`,
      `  notifications   ${n.enabled ? `on (${channels.join(', ')})` : 'off'}`,
      '  rules (first match wins; no match → reject):',
      table.toString(),
    ];
  });
}

async function explainCmd(
  file: string | undefined,
  f: { site: string; ip: string; type: SubjectType; policy?: string },
  out: Output,
) {
  if (!parseIp(f.ip)) throw new PollenError('INVALID_ARGUMENT', `Not an IP address: "${f.ip}"`);
  const loaded = loadPolicy(policyFile(file, f));
  const ex = explain(loaded.policy, { name: f.site, type: f.type, ip: f.ip });
  const evaluated = ex.rules.length;
  const notEvaluated = ex.siteNameCheck.matched
    ? loaded.policy.approval.rules.slice(evaluated).map((r) => r.name)
    : [];
  const data = {
    source: loaded.source === 'built-in' ? 'built-in' : resolve(loaded.source),
    sha256: loaded.sha256,
    request: { name: f.site, type: f.type, ip: f.ip },
    decision: ex.decision,
    siteNameCheck: ex.siteNameCheck,
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

async function showDefault(f: { output?: string; force?: boolean }, out: Output) {
  if (f.output) {
    if (!f.force && existsSync(f.output))
      throw new PollenError('FILE_EXISTS', `Already exists: ${f.output}`, {
        hint: 'Pass --force to overwrite.',
      });
    writeFileAtomic(f.output, DEFAULT_POLICY_YAML, 0o644);
  }
  out.result({ yaml: DEFAULT_POLICY_YAML, output: f.output ? resolve(f.output) : null }, (d) =>
    d.output
      ? `${pc.green('✓')} default policy written to ${d.output}; edit it, then \`pollen policy check ${f.output}\``
      : d.yaml.trimEnd(),
  );
}

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
none fits, the request is rejected. Unknown fields are errors, never ignored.

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

Examples:
  pollen policy check enrollment_policy.yaml
  pollen policy check enrollment_policy.yaml --json     {source, sha256, project, version, policy}`,
    )
    .addOption(policyEnv())
    .action(action<{ policy?: string }>((f, out, args) => check(args[0], f, out)));

  policy
    .command('explain')
    .description('show what the policy decides for one request, and why')
    .argument('[FILE]', FILE_HELP)
    .requiredOption('--site <NAME>', 'the subject name (site name, or e-mail with --type user)')
    .requiredOption('--ip <ADDR>', 'the source IP address the Certificate Service would see')
    .addOption(new Option('--type <TYPE>', 'subject type').choices([...SUBJECT_TYPES]).default('client'))
    .addOption(policyEnv())
    .addHelpText(
      'after',
      `
Prints the decision (approve, reject or pending), the rule that made it, and why each earlier rule
did not match. The exit code is 0 whatever the decision; read "decision.action" from --json.

Examples:
  pollen policy explain policy.yaml --site hospital-1 --ip 10.1.2.3
  pollen policy explain policy.yaml --site hospital-9 --ip ::ffff:192.0.2.7 --json
  pollen policy explain policy.yaml --site alice@example.com --type user --ip 203.0.113.5`,
    )
    .action(
      action<{ site: string; ip: string; type: SubjectType; policy?: string }>((f, out, args) =>
        explainCmd(args[0], f, out),
      ),
    );

  policy
    .command('default')
    .description('print the built-in policy (or write it with -o) as a starting point')
    .option('-o, --output <FILE>', 'write it to FILE')
    .option('-f, --force', 'overwrite FILE')
    .action(action<{ output?: string; force?: boolean }>((f, out) => showDefault(f, out)));
}
