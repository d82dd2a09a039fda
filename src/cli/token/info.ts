import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { inspectToken } from '../../enrollment/token-inspect.js';
import { PollenError } from '../../errors.js';
import { pc } from '../colors.js';
import type { Output } from '../output.js';
import { nonEmpty } from './issue.js';

export interface TokenInfoOptions {
  /** The token, a file holding it, or `-` for standard input. */
  token?: string;
  /** A CA folder whose token key must have signed it. */
  ca?: string;
}

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

/** `pollen token info`: what a token says, and whether a CA folder's token key signed it. */
export async function tokenInfo(f: TokenInfoOptions, out: Output): Promise<void> {
  const arg = nonEmpty(f.token);
  if (!arg)
    throw new PollenError('USAGE', 'Give the token with -t TOKEN|FILE (or set POLLEN_ENROLLMENT_TOKEN)');
  const { token, from } = readTokenArg(arg, () => out.readInput());
  const ca = nonEmpty(f.ca);
  const report = inspectToken(token, ca ? { caDir: ca } : {});
  out.result({ ...report, source: from }, (d) => {
    const rows: Array<[string, string]> = [
      ['token_id', d.token_id],
      ['subject', d.subject],
      ['subject_type', d.subject_type],
      ['roles', d.roles.length ? d.roles.join(', ') : '-'],
      ['org', d.org ?? '-'],
      ['hosts', d.hosts.length ? d.hosts.join(', ') : '-'],
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
            ? `${pc.red('invalid')}${d.signature_note ? ` (${d.signature_note})` : ''}`
            : pc.yellow(d.signature),
      ],
    ];
    const w = Math.max(...rows.map(([k]) => k.length));
    return rows.map(([k, v]) => `${pc.dim(k.padEnd(w))}  ${v}`);
  });
}
