import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { type Command, Option } from 'commander';
import pc from 'picocolors';
import type { SubjectType } from '../../enrollment/policy.js';
import { loadPolicy } from '../../enrollment/policy-load.js';
import {
  checkSubjectSyntax,
  decodeToken,
  decodeTokenHeader,
  issueTokens,
  loadTokenSigner,
  loadTokenVerifier,
  type TokenClaims,
  verifyToken,
} from '../../enrollment/token.js';
import { PollenError } from '../../errors.js';
import { writeSecretFile } from '../../util/files.js';
import { action } from '../command.js';
import {
  apiKeyOption,
  caCertOption,
  caOption,
  caPassphraseOption,
  certServiceOption,
  policyOption,
} from '../env-options.js';
import type { Output } from '../output.js';

// ---------------------------------------------------------------------------------------------
// Shared options

interface IssueFlags {
  user?: boolean;
  relay?: boolean;
  server?: boolean;
  role?: string;
  ca?: string;
  policy?: string;
  certService?: string;
  apiKey?: string;
  caCert?: string;
  force?: boolean;
  json?: boolean;
  caPassphrase?: string;
}

const ENV_HELP = `
Environment variables (flags win):
  POLLEN_CA_PATH            CA folder made by \`pollen cert init\` (local mode, -c)
  POLLEN_ENROLLMENT_POLICY  enrollment policy YAML (local mode, -p); built-in default if unset
  POLLEN_CERT_SERVICE_URL   Certificate Service URL (remote mode, --cert-service)
  POLLEN_API_KEY            Certificate Service API key (remote mode, --api-key)
  POLLEN_CA_CERT            root CA to trust for the Certificate Service (--ca-cert)

Modes: local signs with the CA folder's token key (never the CA key); remote asks the Certificate
Service (POST /v1/tokens), which applies its own policy. Remote is used when --cert-service is given,
or when POLLEN_CERT_SERVICE_URL is set and -c is not.`;

function addIssueOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--user', 'user tokens (subject = e-mail; role from -r)').conflicts(['relay', 'server']),
    )
    .addOption(new Option('--relay', 'relay tokens (hierarchical FL)').conflicts(['user', 'server']))
    .addOption(new Option('--server', 'server (SuperLink) tokens').conflicts(['user', 'relay']))
    .addOption(
      new Option(
        '-r, --role <ROLE>',
        "role for --user tokens (default: the policy's user.default_role)",
      ).choices(['lead', 'member', 'org_admin']),
    )
    .addOption(caOption('local mode: the CA folder'))
    .addOption(
      policyOption('-p, --policy <POLICY>', 'local mode: enrollment policy YAML (default: built-in)'),
    )
    .addOption(certServiceOption('remote mode: Certificate Service URL'))
    .addOption(apiKeyOption('remote mode: API key (prefer the environment variable)'))
    .addOption(caCertOption('remote mode: root CA to trust (default: CA_PATH/rootCA.pem)'))
    .addOption(caPassphraseOption())
    .option('-f, --force', 'overwrite existing output files');
}

function subjectType(f: IssueFlags): SubjectType {
  return f.user ? 'user' : f.relay ? 'relay' : f.server ? 'server' : 'client';
}

const nonEmpty = (v: string | undefined) => (v === undefined || v.trim() === '' ? undefined : v);

type Mode =
  | { kind: 'local'; caDir: string; policyPath: string | undefined }
  | { kind: 'remote'; url: string; apiKey: string; caCert: string | undefined };

function resolveMode(f: IssueFlags, cmd: Command): Mode {
  const url = nonEmpty(f.certService);
  const ca = nonEmpty(f.ca);
  const remote =
    url !== undefined &&
    (cmd.getOptionValueSource('certService') === 'cli' || cmd.getOptionValueSource('ca') !== 'cli');
  if (remote) {
    if (cmd.getOptionValueSource('policy') === 'cli')
      throw new PollenError(
        'USAGE',
        '-p/--policy applies to local mode; the Certificate Service applies its own policy',
      );
    const apiKey = nonEmpty(f.apiKey);
    if (!apiKey)
      throw new PollenError('API_KEY_REQUIRED', 'An API key is required for the Certificate Service');
    let caCertPath = nonEmpty(f.caCert);
    if (caCertPath === undefined && ca !== undefined) {
      caCertPath = join(ca, 'rootCA.pem');
      if (!existsSync(caCertPath)) {
        if (cmd.getOptionValueSource('ca') === 'cli')
          throw new PollenError('CA_NOT_FOUND', `No root CA to trust at ${caCertPath}`, {
            hint: 'Give the project root certificate with --ca-cert FILE (or POLLEN_CA_CERT).',
          });
        caCertPath = undefined;
      }
    }
    let caCert: string | undefined;
    if (caCertPath !== undefined) {
      try {
        caCert = readFileSync(caCertPath, 'utf8');
      } catch {
        throw new PollenError('FILE_NOT_FOUND', `Cannot read the root CA to trust: ${caCertPath}`);
      }
    }
    return { kind: 'remote', url, apiKey, caCert };
  }
  if (!ca)
    throw new PollenError('CA_NOT_FOUND', 'CA path is required', {
      hint: 'Pass -c/--ca DIR (the folder made by `pollen cert init`) or set POLLEN_CA_PATH; or use a Certificate Service with --cert-service URL --api-key KEY.',
    });
  return { kind: 'local', caDir: ca, policyPath: nonEmpty(f.policy) };
}

export interface TokenRecord {
  subject: string;
  tokenId: string;
  subjectType: SubjectType;
  expiresAt: string;
  token: string;
}

const iso = (sec: number) => new Date(sec * 1000).toISOString().replace('.000Z', 'Z');

function fromClaims(token: string, c: TokenClaims): TokenRecord {
  return { subject: c.sub, tokenId: c.jti, subjectType: c.pollen.subject_type, expiresAt: iso(c.exp), token };
}

interface IssueContext {
  mode: Mode['kind'];
  policy?: { source: string; project: string; version: string; sha256: string };
  caDir?: string;
  url?: string;
}

/** Issue tokens in either mode; names are checked locally first in both. */
async function issue(
  subjects: string[],
  f: IssueFlags,
  cmd: Command,
  out: Output,
  progress: boolean,
): Promise<{ records: TokenRecord[]; ctx: IssueContext }> {
  const type = subjectType(f);
  if (f.role !== undefined && type !== 'user')
    throw new PollenError('USAGE', '-r/--role applies to user tokens only; add --user');
  const seen = new Set<string>();
  for (const s of subjects) {
    if (seen.has(s)) throw new PollenError('INVALID_ARGUMENT', `Subject "${s}" is listed twice`);
    seen.add(s);
    checkSubjectSyntax(s, type);
  }
  const mode = resolveMode(f, cmd);
  const report = (done: number, total: number) => {
    if (progress && total >= 1000 && (done % 1000 === 0 || done === total))
      out.progress(`${done}/${total} tokens signed`);
  };
  if (mode.kind === 'remote') {
    // Loaded on demand: undici is only needed in remote mode.
    const { CertServiceClient } = await import('../../enrollment/cert-service-client.js');
    const client = new CertServiceClient({ url: mode.url, apiKey: mode.apiKey, caCert: mode.caCert });
    try {
      const tokens = await client.createTokensInChunks(
        { subjects, type, ...(f.role !== undefined && { role: f.role }) },
        report,
      );
      return {
        records: tokens.map((t) => ({
          subject: t.subject,
          tokenId: t.tokenId,
          subjectType: type,
          expiresAt: t.expiresAt,
          token: t.token,
        })),
        ctx: { mode: 'remote', url: mode.url },
      };
    } finally {
      await client.close();
    }
  }
  const policy = loadPolicy(mode.policyPath);
  const signer = loadTokenSigner(mode.caDir, {
    ...(f.caPassphrase && { passphrase: f.caPassphrase }),
  });
  const issued = await issueTokens(
    signer,
    subjects,
    { type, ...(f.role !== undefined && { role: f.role }), policy },
    report,
  );
  return {
    records: issued.map((t) => fromClaims(t.token, t.claims)),
    ctx: {
      mode: 'local',
      caDir: resolve(mode.caDir),
      policy: {
        source: policy.source,
        project: policy.policy.metadata.project,
        version: policy.policy.metadata.version,
        sha256: policy.sha256,
      },
    },
  };
}

function refuseExisting(path: string, force: boolean | undefined): void {
  if (!force && existsSync(path))
    throw new PollenError('FILE_EXISTS', `Already exists: ${path}`, {
      hint: 'Tokens in it may still be valid; choose another path, or pass --force to overwrite.',
    });
}

// ---------------------------------------------------------------------------------------------
// generate

async function generate(f: IssueFlags & { subject: string; output?: string }, out: Output, cmd: Command) {
  if (f.output) refuseExisting(f.output, f.force);
  const { records, ctx } = await issue([f.subject], f, cmd, out, false);
  const r = records[0]!;
  if (f.output) writeSecretFile(f.output, r.token);
  const where =
    ctx.mode === 'local' ? `policy ${ctx.policy?.project} ${ctx.policy?.version}` : `via ${ctx.url}`;
  if (!out.json) out.progress(`${r.subjectType} token for ${r.subject}, expires ${r.expiresAt} (${where})`);
  out.result({ ...r, mode: ctx.mode, output: f.output ? resolve(f.output) : null }, (d) =>
    d.output ? `${pc.green('✓')} token for ${d.subject} written to ${d.output} (mode 0600)` : d.token,
  );
}

// ---------------------------------------------------------------------------------------------
// batch

type BatchFormat = 'csv' | 'txt' | 'folder';

function batchFormat(output: string): BatchFormat {
  if (output.endsWith('/') || output.endsWith(sep) || (existsSync(output) && statSync(output).isDirectory()))
    return 'folder';
  if (/\.csv$/i.test(output)) return 'csv';
  if (/\.txt$/i.test(output)) return 'txt';
  throw new PollenError('INVALID_ARGUMENT', `Cannot tell the output format of "${output}"`, {
    hint: 'Use a FILE.csv, a FILE.txt, or a folder (an existing one, or a path ending in /) for one NAME.token file per subject.',
  });
}

function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

function batchNames(f: { count?: string; names?: string[]; prefix?: string }): string[] {
  if ((f.count === undefined) === (f.names === undefined))
    throw new PollenError('USAGE', 'Give either -n/--count or --names (exactly one)');
  if (f.names !== undefined) {
    if (f.prefix !== undefined)
      throw new PollenError('USAGE', '--prefix goes with -n/--count, not with --names');
    if (f.names.length === 0) throw new PollenError('USAGE', '--names needs at least one name');
    return f.names;
  }
  const n = Number(f.count);
  if (!/^\d+$/.test(f.count ?? '') || !Number.isSafeInteger(n) || n < 1 || n > 1_000_000)
    throw new PollenError(
      'INVALID_ARGUMENT',
      `-n/--count must be a whole number from 1 to 1000000 (got "${f.count}")`,
    );
  const prefix = f.prefix ?? 'client';
  return Array.from({ length: n }, (_, i) => `${prefix}-${i + 1}`);
}

async function batch(
  f: IssueFlags & { count?: string; names?: string[]; prefix?: string; output: string },
  out: Output,
  cmd: Command,
) {
  const started = performance.now();
  const subjects = batchNames(f);
  const format = batchFormat(f.output);
  const target = resolve(f.output);
  const fileOf = (name: string) => {
    const file = resolve(target, `${name}.token`);
    if (!file.startsWith(target + sep))
      throw new PollenError('INVALID_ARGUMENT', `Subject "${name}" cannot be used as a file name`);
    return file;
  };
  if (format === 'folder') {
    for (const s of subjects) {
      const file = fileOf(s);
      if (!f.force && existsSync(file))
        throw new PollenError('FILE_EXISTS', `Already exists: ${file}`, {
          hint: 'Tokens in it may still be valid; choose another folder, or pass --force to overwrite.',
        });
    }
  } else refuseExisting(target, f.force);

  if (subjects.length >= 1000) out.progress(`issuing ${subjects.length} tokens`);
  const { records, ctx } = await issue(subjects, f, cmd, out, true);
  const signedMs = performance.now() - started;

  if (format === 'folder') {
    // A new folder is private from the start; an existing one keeps its mode.
    mkdirSync(target, { recursive: true, mode: 0o700 });
    if (records.length >= 1000) out.progress(`writing ${records.length} files to ${target}`);
    for (const r of records) writeSecretFile(fileOf(r.subject), r.token);
  } else if (format === 'csv') {
    const lines = ['subject,token_id,subject_type,expires_at,token'];
    for (const r of records)
      lines.push([r.subject, r.tokenId, r.subjectType, r.expiresAt, r.token].map(csvField).join(','));
    writeSecretFile(target, `${lines.join('\n')}\n`);
  } else {
    writeSecretFile(target, records.map((r) => `${r.subject} ${r.token}\n`).join(''));
  }
  const elapsedMs = Math.round(performance.now() - started);
  const type = subjectType(f);
  out.result(
    {
      output: target,
      format,
      count: records.length,
      subjectType: type,
      mode: ctx.mode,
      ...(ctx.policy && { policy: ctx.policy }),
      expiresAt: records[0]?.expiresAt ?? null,
      elapsedMs,
      signMs: Math.round(signedMs),
    },
    (d) => {
      const files = d.format === 'folder' ? 'one NAME.token file each, mode 0600' : 'mode 0600';
      const plural = d.count === 1 ? '' : 's';
      return (
        `${pc.green('✓')} ${d.count} ${d.subjectType} token${plural} written to ${d.output} (${files}) ` +
        `in ${(d.elapsedMs / 1000).toFixed(2)} s; expires ${d.expiresAt}`
      );
    },
  );
}

// ---------------------------------------------------------------------------------------------
// info

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function readTokenArg(value: string, stdin: () => string): { token: string; from: string } {
  if (value === '-') return { token: stdin().trim(), from: 'stdin' };
  if (JWT_SHAPE.test(value.trim()) && !existsSync(value)) return { token: value.trim(), from: 'argument' };
  if (existsSync(value)) {
    if (statSync(value).isDirectory())
      throw new PollenError('INVALID_ARGUMENT', `${value} is a folder, not a token file`);
    if (statSync(value).size > 64 * 1024)
      throw new PollenError('TOKEN_INVALID', `${value} is too large to be a token`);
    return { token: readFileSync(value, 'utf8').trim(), from: resolve(value) };
  }
  throw new PollenError(
    'FILE_NOT_FOUND',
    `"${value.length > 40 ? `${value.slice(0, 40)}…` : value}" is neither a token nor a file`,
  );
}

export type SignatureStatus = 'verified' | 'invalid' | 'not checked (no CA at hand)';

async function info(f: { token?: string; ca?: string; json?: boolean }, out: Output) {
  const arg = nonEmpty(f.token);
  if (!arg)
    throw new PollenError('USAGE', 'Give the token with -t TOKEN|FILE (or set POLLEN_ENROLLMENT_TOKEN)');
  const { token, from } = readTokenArg(arg, () => out.readInput());
  const claims = decodeToken(token);
  const header = decodeTokenHeader(token);
  let signature: SignatureStatus = 'not checked (no CA at hand)';
  let signatureNote: string | undefined;
  const ca = nonEmpty(f.ca);
  if (ca) {
    const v = loadTokenVerifier(ca);
    try {
      verifyToken(token, { keys: v.keys, issuer: v.issuer });
      signature = 'verified';
    } catch (e) {
      if (e instanceof PollenError && (e.code === 'TOKEN_EXPIRED' || e.code === 'TOKEN_NOT_YET_VALID'))
        signature = 'verified';
      else {
        signature = 'invalid';
        signatureNote = `not signed by the token key of the CA in ${resolve(ca)}`;
      }
    }
    if (signature === 'verified' && claims.pollen.root_ca_fingerprint !== v.rootFingerprint) {
      signature = 'invalid';
      signatureNote = `it pins a different root CA than ${resolve(ca)}`;
    }
  }
  const now = Math.floor(Date.now() / 1000);
  const data = {
    token_id: claims.jti,
    subject: claims.sub,
    subject_type: claims.pollen.subject_type,
    roles: claims.pollen.roles,
    issuer: claims.iss,
    audience: claims.aud,
    issued_at: iso(claims.iat),
    not_before: iso(claims.nbf),
    expires_at: iso(claims.exp),
    expired: claims.exp <= now,
    max_uses: claims.pollen.max_uses,
    policy_project: claims.pollen.policy.project,
    policy_version: claims.pollen.policy.version,
    policy_sha256: claims.pollen.policy.sha256,
    root_ca_fingerprint: claims.pollen.root_ca_fingerprint,
    key_id: typeof header.kid === 'string' ? header.kid : null,
    signature,
    ...(signatureNote && { signature_note: signatureNote }),
    source: from,
  };
  out.result(data, (d) => {
    const rows: Array<[string, string]> = [
      ['token_id', d.token_id],
      ['subject', d.subject],
      ['subject_type', d.subject_type],
      ['roles', d.roles.length ? d.roles.join(', ') : '-'],
      ['issuer', d.issuer],
      ['audience', d.audience],
      ['issued_at', d.issued_at],
      ['expires_at', d.expired ? `${d.expires_at} ${pc.red('(expired)')}` : d.expires_at],
      ['max_uses', String(d.max_uses)],
      ['policy', `${d.policy_project} ${d.policy_version}`],
      ['policy_sha256', d.policy_sha256],
      ['root_ca_fingerprint', d.root_ca_fingerprint],
      ['key_id', d.key_id ?? '-'],
      [
        'signature',
        d.signature === 'verified'
          ? pc.green('verified')
          : d.signature === 'invalid'
            ? `${pc.red('invalid')}${signatureNote ? ` (${signatureNote})` : ''}`
            : pc.yellow(d.signature),
      ],
    ];
    const w = Math.max(...rows.map(([k]) => k.length));
    return rows.map(([k, v]) => `${pc.dim(k.padEnd(w))}  ${v}`);
  });
}

// ---------------------------------------------------------------------------------------------
// Registration

export function registerToken(program: Command): void {
  const token = program
    .command('token')
    .description('generate and inspect enrollment tokens (JWT, ES256, signed by the CA folder token key)')
    .addHelpText(
      'after',
      `
A site (or user) enrolls with a token: it proves who the project admin allowed to join, as which
type (client, server, relay, user) and role. Tokens are single-use by default (policy token.max_uses),
expire (policy token.validity, default 7d) and pin the project root CA.

Examples:
  pollen token generate -s hospital-1 -c ./ca
  pollen token batch -n 10 --prefix hospital -c ./ca -o tokens.csv
  pollen token info -t enrollment_token.txt -c ./ca
${ENV_HELP}`,
    );

  addIssueOptions(
    token
      .command('generate')
      .description('generate one enrollment token')
      .requiredOption('-s, --subject <SUBJECT>', 'site name, or e-mail for --user')
      .option('-o, --output <FILE>', 'write the token to FILE (mode 0600) instead of stdout'),
  )
    .addHelpText(
      'after',
      `
Examples:
  pollen token generate -s hospital-1 -c ./ca                 client token, printed on stdout
  pollen token generate -s hospital-1 -c ./ca -o hospital-1.token
  pollen token generate -s admin@example.com --user -c ./ca   user token, role lead (policy default)
  pollen token generate -s researcher@example.com --user -r member -c ./ca
  pollen token generate -s relay-1 --relay -c ./ca
  pollen token generate -s hospital-1 -c ./ca -p enrollment_policy.yaml
  POLLEN_API_KEY=… pollen token generate -s hospital-1 --cert-service https://certs:8443 --ca-cert rootCA.pem

The text output is the token alone (details go to stderr), so TOKEN=$(pollen token generate …) works.
--json prints {token, tokenId, subject, subjectType, expiresAt, mode, output}.
${ENV_HELP}`,
    )
    .action(
      action<IssueFlags & { subject: string; output?: string }>((f, out, _a, cmd) => generate(f, out, cmd)),
    );

  addIssueOptions(
    token
      .command('batch')
      .description('generate many enrollment tokens into a CSV, a TXT file or a folder')
      .option('-n, --count <COUNT>', 'number of tokens, named PREFIX-1 … PREFIX-COUNT')
      .option('--prefix <PREFIX>', 'name prefix for -n (default: client)')
      .option('--names <NAMES...>', 'explicit subject names (instead of -n)')
      .requiredOption('-o, --output <OUT>', 'FILE.csv, FILE.txt, or a folder (existing, or ending in /)'),
  )
    .addHelpText(
      'after',
      `
Output (always mode 0600; existing files are refused unless --force):
  FILE.csv   header subject,token_id,subject_type,expires_at,token
  FILE.txt   one "SUBJECT TOKEN" line per token
  DIR/       one DIR/NAME.token file per subject, holding the token alone, e.g. for
             kubectl create secret generic hospital-1-token --from-file=token=DIR/hospital-1.token

Examples:
  pollen token batch -n 10 --prefix hospital -c ./ca -o tokens.csv     hospital-1 … hospital-10
  pollen token batch --names site-a site-b site-c -c ./ca -o tokens/
  pollen token batch --names alice@org.com bob@org.com --user -r member -c ./ca -o users.txt
  pollen token batch -n 3 --prefix relay --relay -c ./ca -o relay_tokens.csv
  pollen token batch -n 100 --prefix site --cert-service https://certs:8443 -o tokens.csv
${ENV_HELP}`,
    )
    .action(
      action<IssueFlags & { count?: string; names?: string[]; prefix?: string; output: string }>(
        (f, out, _a, cmd) => batch(f, out, cmd),
      ),
    );

  token
    .command('info')
    .description('show what a token says (and check its signature when a CA folder is at hand)')
    .addOption(
      new Option('-t, --token <TOKEN|FILE>', 'the token, a file holding it, or - for stdin').env(
        'POLLEN_ENROLLMENT_TOKEN',
      ),
    )
    .addOption(
      new Option('-c, --ca <CA_PATH>', 'CA folder whose token key must have signed it').env('POLLEN_CA_PATH'),
    )
    .addHelpText(
      'after',
      `
Without a CA folder the token is only decoded ("signature: not checked (no CA at hand)"); with -c
(or POLLEN_CA_PATH) the signature, issuer and pinned root CA fingerprint are checked too. An expired
token is still shown (expired: true). Exit code 0 whenever the token could be read.

Examples:
  pollen token info -t enrollment_token.txt
  pollen token info -t "eyJhbGciOiJFUzI1NiIs…" -c ./ca --json
  pollen token generate -s hospital-1 -c ./ca | pollen token info -t -
`,
    )
    .action(action<{ token?: string; ca?: string; json?: boolean }>((f, out) => info(f, out)));
}
