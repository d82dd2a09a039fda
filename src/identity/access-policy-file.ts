/**
 * A deployment's access policy as a YAML file: role → right → scope, the shape of
 * `AccessPolicy` (rights.ts). Every problem is reported with its line: an unknown role or right,
 * a scope that is not own/org/any, a key given twice. A role the file leaves out has no rights.
 */
import { readFileSync, statSync } from 'node:fs';
import { isMap, isScalar, LineCounter, type Node, parseDocument } from 'yaml';
import { PollenError } from '../errors.js';
import { isRole, ROLES, type Role } from './identity.js';
import {
  type AccessPolicy,
  DEFAULT_ACCESS_POLICY,
  RIGHTS,
  type Right,
  SCOPES,
  type Scope,
} from './rights.js';

/** The default policy as a file (docs/identity.md shows it; a test checks it equals DEFAULT_ACCESS_POLICY). */
export const DEFAULT_ACCESS_POLICY_YAML = `# Pollen access policy: role → right → scope. A right a role does not list is denied.
# Scopes: own (what the caller created), org (what belongs to the caller's organisation), any.
# Rights: run.submit, run.stop, run.view, node.manage, enrollment.decide,
#         service_account.manage, audit.read, federation.create, federation.manage.
# In a federation other than \`default\`, a member's role there is what counts (docs/identity.md).
project_admin:
  run.submit: any
  run.stop: any
  run.view: any
  node.manage: any
  enrollment.decide: any
  service_account.manage: any
  audit.read: any
  federation.create: any
  federation.manage: any
org_admin:
  run.stop: org
  run.view: any
  node.manage: org
  enrollment.decide: org
  service_account.manage: org
  audit.read: org
  federation.manage: any
lead:
  run.submit: any
  run.stop: own
  run.view: any
member:
  run.view: any
`;

export interface AccessPolicyIssue {
  line: number;
  /** `role` or `role.right`; empty for the document. */
  path: string;
  message: string;
}

const MAX_POLICY_BYTES = 256 * 1024;

/**
 * Parse and check policy text; `source` names it in errors (a path or 'built-in').
 *
 * @example
 * ```ts
 * const policy = parseAccessPolicy('lead:\n  run.submit: any\n', 'access.yaml');
 * authorize(policy, who, 'run.submit');
 * ```
 */
export function parseAccessPolicy(text: string, source = 'access policy'): AccessPolicy {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const lineOf = (node: Node | null | undefined): number =>
    node?.range ? lineCounter.linePos(node.range[0]).line : 1;
  if (doc.errors.length > 0)
    throw invalid(
      source,
      doc.errors.map((e) => ({
        line: lineCounter.linePos(e.pos[0]).line,
        path: '',
        message: `YAML syntax: ${e.message.replace(/ at line \d+, column \d+.*$/s, '')}`,
      })),
    );
  const issues: AccessPolicyIssue[] = [];
  const policy = Object.fromEntries(ROLES.map((r) => [r, {}])) as AccessPolicy;
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return policy;
  if (!isMap(root))
    throw invalid(source, [
      { line: lineOf(root), path: '', message: `must map roles to their rights (${ROLES.join(', ')})` },
    ]);

  const seenRoles = new Map<string, number>();
  for (const pair of root.items) {
    const keyNode = pair.key as Node | null;
    const role = isScalar(keyNode) ? String(keyNode.value) : '';
    const line = lineOf(keyNode);
    if (!isRole(role)) {
      issues.push({ line, path: role, message: `is not a role (roles: ${ROLES.join(', ')})` });
      continue;
    }
    if (seenRoles.has(role)) {
      issues.push({ line, path: role, message: `is given twice (first on line ${seenRoles.get(role)})` });
      continue;
    }
    seenRoles.set(role, line);
    readRights(role, pair.value as Node | null, policy, issues, lineOf);
  }
  if (issues.length > 0) throw invalid(source, issues);
  return policy;
}

function readRights(
  role: Role,
  value: Node | null,
  policy: AccessPolicy,
  issues: AccessPolicyIssue[],
  lineOf: (n: Node | null | undefined) => number,
): void {
  if (value === null || (isScalar(value) && value.value === null)) return;
  if (!isMap(value)) {
    issues.push({ line: lineOf(value), path: role, message: 'must map rights to scopes (run.view: any)' });
    return;
  }
  const seen = new Map<string, number>();
  for (const pair of value.items) {
    const keyNode = pair.key as Node | null;
    const right = isScalar(keyNode) ? String(keyNode.value) : '';
    const line = lineOf(keyNode);
    const path = `${role}.${right}`;
    if (!(RIGHTS as readonly string[]).includes(right)) {
      issues.push({ line, path, message: `is not a right (rights: ${RIGHTS.join(', ')})` });
      continue;
    }
    if (seen.has(right)) {
      issues.push({ line, path, message: `is given twice (first on line ${seen.get(right)})` });
      continue;
    }
    seen.set(right, line);
    const scopeNode = pair.value as Node | null;
    const scope = isScalar(scopeNode) ? scopeNode.value : undefined;
    if (typeof scope !== 'string' || !(SCOPES as readonly string[]).includes(scope)) {
      issues.push({
        line: scopeNode ? lineOf(scopeNode) : line,
        path,
        message: `must be a scope: ${SCOPES.join(', ')} (leave the right out to deny it)`,
      });
      continue;
    }
    policy[role][right as Right] = scope as Scope;
  }
}

function invalid(source: string, issues: AccessPolicyIssue[]): PollenError {
  issues.sort((a, b) => a.line - b.line);
  const fmt = (i: AccessPolicyIssue) => `line ${i.line}: ${i.path ? `${i.path} ` : ''}${i.message}`;
  const message =
    issues.length === 1
      ? `Invalid access policy ${source}: ${fmt(issues[0]!)}`
      : `Invalid access policy ${source}, ${issues.length} problems:\n${issues.map((i) => `  - ${fmt(i)}`).join('\n')}`;
  return new PollenError('ACCESS_POLICY_INVALID', message, { data: { source, issues } });
}

/** Load a policy file, or the default policy when `path` is undefined. */
export function loadAccessPolicy(path?: string): AccessPolicy {
  if (path === undefined) return DEFAULT_ACCESS_POLICY;
  let text: string;
  try {
    if (statSync(path).size > MAX_POLICY_BYTES)
      throw new PollenError('ACCESS_POLICY_INVALID', `Access policy ${path} is larger than 256 KiB`);
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof PollenError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new PollenError('FILE_NOT_FOUND', `Access policy not found: ${path}`, {
        hint: 'Check the path, or leave it out to use the default policy (docs/identity.md).',
      });
    if (code === 'EISDIR')
      throw new PollenError('ACCESS_POLICY_INVALID', `Access policy path is a folder: ${path}`);
    throw e;
  }
  return parseAccessPolicy(text, path);
}
