/**
 * Reading an enrollment policy: YAML parsed with line numbers, checked against the schema, every
 * problem reported with its field path and line.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { PollenError } from '../errors.js';
import { isOrgName } from '../pki/names.js';
import { DEFAULT_POLICY_YAML, type LoadedPolicy, type Policy, RULE_ACTIONS, USER_ROLES } from './policy.js';
import { durationMs, MAX_VALIDITY_MS, parseCidr } from './policy-match.js';

// ---------------------------------------------------------------------------------------------
// Schema

const nonEmpty = (what: string) => z.string().trim().min(1, `${what} must not be empty`);

const glob = z
  .string()
  .min(1, 'must not be empty')
  .max(256, 'must be at most 256 characters')
  .refine((s) => !/[\s\u0000-\u001f]/.test(s), 'must not contain spaces or control characters');

const durationSchema = z.string().superRefine((s, ctx) => {
  const ms = durationMs(s);
  if (ms === undefined)
    ctx.addIssue({ code: 'custom', message: 'must be a duration like 7d, 12h, 30m or 1d12h' });
  else if (ms < 60_000) ctx.addIssue({ code: 'custom', message: 'must be at least 1m' });
  else if (ms > MAX_VALIDITY_MS) ctx.addIssue({ code: 'custom', message: 'must be at most 366d' });
});

const cidrSchema = z.string().superRefine((s, ctx) => {
  const c = parseCidr(s);
  if (typeof c === 'string') ctx.addIssue({ code: 'custom', message: c });
});

/** A DNS glob (`*.example.com`, `localhost`), an IP address or range (`10.0.0.0/8`), or `*`. */
const hostPatternSchema = z.string().superRefine((s, ctx) => {
  const range = parseCidr(s);
  if (typeof range !== 'string') return;
  if (/[/:]/.test(s) || /^[0-9.]+$/.test(s)) ctx.addIssue({ code: 'custom', message: range });
  else if (!/^[A-Za-z0-9*?.-]{1,253}$/.test(s))
    ctx.addIssue({
      code: 'custom',
      message: `"${s}" is neither a DNS name pattern (*.example.com) nor an IP address or range (10.0.0.0/8)`,
    });
});

const email = z.string().regex(/^[^\s@,;"<>]+@[^\s@,;"<>]+\.[^\s@,;"<>]+$/, 'must be an e-mail address');

const webhookUrl = z.string().superRefine((s, ctx) => {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be a URL' });
    return;
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname);
  if (!(u.protocol === 'https:' || (u.protocol === 'http:' && loopback)))
    ctx.addIssue({ code: 'custom', message: 'must be an https:// URL (http:// only on localhost)' });
  if (u.username || u.password)
    ctx.addIssue({ code: 'custom', message: 'must not carry credentials; use the service configuration' });
});

const ruleSchema = z.strictObject({
  name: nonEmpty('name'),
  description: z.string().optional(),
  match: z.strictObject({
    site_name_pattern: glob.optional(),
    source_ips: z.array(cidrSchema).min(1, 'must list at least one range (or leave it out)').optional(),
  }),
  action: z.enum(RULE_ACTIONS),
});

const roleEnum = z.enum(USER_ROLES);

const policySchema = z
  .strictObject({
    metadata: z.strictObject({
      project: nonEmpty('project'),
      description: z.string().optional(),
      version: nonEmpty('version').default('1.0'),
    }),
    token: z
      .strictObject({
        validity: durationSchema.default('7d'),
        max_uses: z
          .number()
          .int('must be a whole number')
          .min(1, 'must be at least 1')
          .max(1_000_000, 'must be at most 1000000')
          .default(1),
      })
      .default({ validity: '7d', max_uses: 1 }),
    site: z
      .strictObject({
        name_pattern: glob.default('*'),
        host_patterns: z
          .array(hostPatternSchema)
          .min(1, 'must list at least one pattern (or leave it out: "*", any host)')
          .default(['*']),
      })
      .default({ name_pattern: '*', host_patterns: ['*'] }),
    user: z
      .strictObject({
        allowed_roles: z
          .array(roleEnum)
          .min(1, 'must list at least one role')
          .default([...USER_ROLES]),
        default_role: roleEnum.default('lead'),
      })
      .default({ allowed_roles: [...USER_ROLES], default_role: 'lead' }),
    orgs: z
      .array(
        z.string().refine(isOrgName, {
          message:
            'must be an organisation name: letters, digits, spaces and . _ @ & + - (at most 64 characters)',
        }),
      )
      .min(1, 'must list at least one organisation (or leave it out: any organisation)')
      .superRefine((orgs, ctx) => {
        orgs.forEach((o, i) => {
          if (orgs.indexOf(o) !== i)
            ctx.addIssue({ code: 'custom', path: [i], message: `"${o}" is listed twice` });
        });
      })
      .optional(),
    approval: z.strictObject({
      method: z
        .string()
        .default('policy')
        .superRefine((m, ctx) => {
          if (m !== 'policy')
            ctx.addIssue({
              code: 'custom',
              message: `"${m}" is not supported; the only method is "policy" (use rules with action: pending for manual approval)`,
            });
        }),
      rules: z
        .array(ruleSchema)
        .min(1, 'must list at least one rule')
        .superRefine((rules, ctx) => {
          const names = new Map<string, number>();
          rules.forEach((r, i) => {
            const first = names.get(r.name);
            if (first !== undefined)
              ctx.addIssue({
                code: 'custom',
                path: [i, 'name'],
                message: `"${r.name}" is already the name of rules[${first}]; rule names must be unique`,
              });
            else names.set(r.name, i);
          });
        }),
    }),
    notifications: z
      .strictObject({
        enabled: z.boolean().default(false),
        channels: z
          .strictObject({
            email: z.strictObject({ enabled: z.boolean(), to: z.array(email).default([]) }).optional(),
            webhook: z.strictObject({ enabled: z.boolean(), url: webhookUrl }).optional(),
          })
          .default({}),
      })
      .superRefine((n, ctx) => {
        if (n.enabled && !n.channels.email?.enabled && !n.channels.webhook?.enabled)
          ctx.addIssue({
            code: 'custom',
            path: ['enabled'],
            message: 'is true but no channel is enabled (notifications.channels.email or .webhook)',
          });
      })
      .default({ enabled: false, channels: {} }),
  })
  .superRefine((p, ctx) => {
    const seenRoles = new Set<string>();
    p.user.allowed_roles.forEach((r, i) => {
      if (seenRoles.has(r))
        ctx.addIssue({
          code: 'custom',
          path: ['user', 'allowed_roles', i],
          message: `"${r}" is listed twice`,
        });
      seenRoles.add(r);
    });
    if (!p.user.allowed_roles.includes(p.user.default_role))
      ctx.addIssue({
        code: 'custom',
        path: ['user', 'default_role'],
        message: `"${p.user.default_role}" must be one of user.allowed_roles (${p.user.allowed_roles.join(', ')})`,
      });
  });

// ---------------------------------------------------------------------------------------------
// Parsing with line numbers

export interface PolicyIssue {
  /** Dotted path, e.g. `approval.rules[1].action`; empty for the document itself. */
  path: string;
  line: number;
  message: string;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
};

interface RawIssue {
  code: string;
  path: PropertyKey[];
  message: string;
  input?: unknown;
  expected?: string;
  values?: unknown[];
  keys?: string[];
}

function issueMessages(issue: RawIssue): Array<{ path: PropertyKey[]; message: string; keyLine?: boolean }> {
  switch (issue.code) {
    case 'unrecognized_keys':
      return (issue.keys ?? []).map((k) => ({
        path: [...issue.path, k],
        message: 'is not a supported field (check the spelling; see `pollen policy default`)',
        keyLine: true,
      }));
    case 'invalid_value': {
      const choices = (issue.values ?? []).map(String).join(', ');
      if (issue.input === undefined)
        return [{ path: issue.path, message: `is required (one of ${choices})` }];
      return [{ path: issue.path, message: `must be one of ${choices}` }];
    }
    case 'invalid_type': {
      const want = TYPE_WORDS[issue.expected ?? ''] ?? issue.expected ?? 'something else';
      if (issue.input === undefined) return [{ path: issue.path, message: `is required (${want})` }];
      if (issue.expected === 'int') return [{ path: issue.path, message: 'must be a whole number' }];
      return [{ path: issue.path, message: `must be ${want}, not ${describeType(issue.input)}` }];
    }
    default:
      return [{ path: issue.path, message: issue.message }];
  }
}

function nodeAt(doc: ReturnType<typeof parseDocument>, path: readonly PropertyKey[], key: boolean) {
  // The deepest existing node on the path (a missing field is reported at its parent's line).
  let node: unknown = doc.contents;
  let keyNode: unknown;
  for (const p of path) {
    if (isMap(node)) {
      const pair = node.items.find((it) => (isScalar(it.key) ? it.key.value : it.key) === p);
      if (!pair) break;
      keyNode = pair.key;
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof p === 'number' && node.items[p] !== undefined) {
      keyNode = undefined;
      node = node.items[p];
    } else {
      break;
    }
  }
  return (key && keyNode ? keyNode : node) as YamlNode | undefined;
}

/** Keys given twice in one mapping (YAML forbids it; a silent "last one wins" would hide mistakes). */
function duplicateKeys(node: unknown, path: PropertyKey[], lineOf: (n: YamlNode) => number): PolicyIssue[] {
  const out: PolicyIssue[] = [];
  if (isMap(node)) {
    const seen = new Map<unknown, number>();
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? pair.key.value : pair.key;
      const keyPath = [...path, typeof key === 'number' ? String(key) : (key as PropertyKey)];
      const line = isScalar(pair.key) ? lineOf(pair.key) : 1;
      const first = seen.get(key);
      if (first !== undefined)
        out.push({ path: formatPath(keyPath), line, message: `is given twice (first on line ${first})` });
      else seen.set(key, line);
      out.push(...duplicateKeys(pair.value, keyPath, lineOf));
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      out.push(...duplicateKeys(item, [...path, i], lineOf));
    });
  }
  return out;
}

/**
 * POLICY_INVALID listing every issue with its field and line, under `title` (default: "Invalid
 * enrollment policy SOURCE"); `hint` replaces the catalogue's.
 */
export function invalidPolicy(
  source: string,
  issues: PolicyIssue[],
  o: { title?: string; hint?: string } = {},
): PollenError {
  const fmt = (i: PolicyIssue) =>
    i.path ? `${i.path} (line ${i.line}): ${i.message}` : `line ${i.line}: ${i.message}`;
  const title = o.title ?? `Invalid enrollment policy ${source}`;
  const message =
    issues.length === 1
      ? `${title}: ${fmt(issues[0]!)}`
      : `${title}, ${issues.length} problems:\n${issues.map((i) => `  - ${fmt(i)}`).join('\n')}`;
  return new PollenError('POLICY_INVALID', message, {
    data: { source, issues },
    ...(o.hint !== undefined && { hint: o.hint }),
  });
}

/** The line of a field of a loaded policy (of its nearest written parent when it is left out). */
export function fieldLine(loaded: LoadedPolicy, path: readonly PropertyKey[]): number {
  const lineCounter = new LineCounter();
  const doc = parseDocument(loaded.text, { lineCounter, uniqueKeys: false });
  const node = nodeAt(doc, path, true);
  return node?.range ? lineCounter.linePos(node.range[0]).line : 1;
}

function parseBytes(bytes: Buffer, source: string): LoadedPolicy {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const text = bytes.toString('utf8');
  const lineCounter = new LineCounter();
  // Duplicate keys are found below (with their path and line), not by the parser.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  if (doc.errors.length > 0)
    throw invalidPolicy(
      source,
      doc.errors.map((e) => ({
        path: '',
        line: e.linePos?.[0].line ?? 1,
        message: `YAML syntax: ${e.message.replace(/ at line \d+, column \d+.*$/s, '')}`,
      })),
    );
  const lineOf = (node: YamlNode | undefined): number =>
    node?.range ? lineCounter.linePos(node.range[0]).line : 1;
  const duplicates = duplicateKeys(doc.contents, [], (n) => lineOf(n));
  if (duplicates.length > 0) throw invalidPolicy(source, duplicates);
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 50 });
  } catch (e) {
    throw invalidPolicy(source, [{ path: '', line: 1, message: `YAML: ${(e as Error).message}` }]);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data))
    throw invalidPolicy(source, [
      {
        path: '',
        line: lineOf(doc.contents ?? undefined),
        message: 'must be a YAML mapping (metadata:, token:, ...)',
      },
    ]);
  // `version: 1.0` (unquoted) is a number in YAML; keep what the author wrote.
  const versionNode = nodeAt(doc, ['metadata', 'version'], false);
  const meta = (data as Record<string, unknown>)['metadata'];
  if (
    isScalar(versionNode) &&
    typeof versionNode.value === 'number' &&
    versionNode.range &&
    meta &&
    typeof meta === 'object'
  )
    (meta as Record<string, unknown>)['version'] = text
      .slice(versionNode.range[0], versionNode.range[1])
      .trim();

  const result = policySchema.safeParse(data, { reportInput: true });
  if (!result.success) {
    const issues: PolicyIssue[] = [];
    for (const raw of result.error.issues as unknown as RawIssue[])
      for (const m of issueMessages(raw))
        issues.push({
          path: formatPath(m.path),
          line: lineOf(nodeAt(doc, m.path, m.keyLine === true)),
          message: m.message,
        });
    issues.sort((a, b) => a.line - b.line);
    throw invalidPolicy(source, issues);
  }
  const p = result.data;
  const policy: Policy = {
    metadata: {
      project: p.metadata.project,
      ...(p.metadata.description !== undefined && { description: p.metadata.description }),
      version: p.metadata.version,
    },
    token: {
      validity: p.token.validity,
      validity_ms: durationMs(p.token.validity)!,
      max_uses: p.token.max_uses,
    },
    site: p.site,
    user: p.user,
    ...(p.orgs && { orgs: p.orgs }),
    approval: {
      method: 'policy',
      rules: p.approval.rules.map((r) => ({
        name: r.name,
        ...(r.description !== undefined && { description: r.description }),
        match: {
          ...(r.match.site_name_pattern !== undefined && { site_name_pattern: r.match.site_name_pattern }),
          ...(r.match.source_ips !== undefined && { source_ips: r.match.source_ips.map((c) => c.trim()) }),
        },
        action: r.action,
      })),
    },
    notifications: {
      enabled: p.notifications.enabled,
      channels: {
        ...(p.notifications.channels.email && { email: p.notifications.channels.email }),
        ...(p.notifications.channels.webhook && { webhook: p.notifications.channels.webhook }),
      },
    },
  };
  return { policy, sha256, source, text };
}

/** Parse and validate policy text. `source` names it in errors (a path or 'built-in'). */
export function parsePolicy(text: string, source = 'policy'): LoadedPolicy {
  return parseBytes(Buffer.from(text, 'utf8'), source);
}

const MAX_POLICY_BYTES = 1024 * 1024;

/** Load a policy file, or the built-in default when `path` is undefined. */
export function loadPolicy(path?: string): LoadedPolicy {
  if (path === undefined) return parsePolicy(DEFAULT_POLICY_YAML, 'built-in');
  let bytes: Buffer;
  try {
    if (statSync(path).size > MAX_POLICY_BYTES)
      throw new PollenError('POLICY_INVALID', `Policy file ${path} is larger than 1 MiB`);
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof PollenError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new PollenError('FILE_NOT_FOUND', `Policy file not found: ${path}`, {
        hint: 'Check -p / POLLEN_ENROLLMENT_POLICY, or leave both unset to use the built-in policy.',
      });
    if (code === 'EISDIR') throw new PollenError('POLICY_INVALID', `Policy path is a folder: ${path}`);
    throw e;
  }
  return parseBytes(bytes, path);
}
