import { resolve } from 'node:path';
import { PollenError } from '../../errors.js';
import { writeSecretFile } from '../../util/files.js';
import { type Output, ok } from '../output.js';
import { issue, refuseExisting, type TokenIssueOptions } from './issue.js';

export interface TokenGenerateOptions extends TokenIssueOptions {
  /** `-s`; `name` (`-n`, FLARE's spelling) says the same. */
  subject?: string;
  name?: string;
  /** Write the token to this file (0600) instead of printing it. */
  output?: string;
}

/** `pollen token generate`: one token, printed alone (details on stderr) or written to a file. */
export async function tokenGenerate(f: TokenGenerateOptions, out: Output): Promise<void> {
  const subject = subjectOf(f);
  if (f.output) refuseExisting(f.output, f.force);
  const issued = await issue([subject], f, out, false);
  const r = issued.records[0]!;
  if (f.output) writeSecretFile(f.output, r.token);
  const where =
    issued.mode === 'local'
      ? `policy ${issued.policy?.project} ${issued.policy?.version}`
      : `via ${issued.url}`;
  if (!out.json) out.progress(`${r.subjectType} token for ${r.subject}, expires ${r.expiresAt} (${where})`);
  out.result({ ...r, mode: issued.mode, output: f.output ? resolve(f.output) : null }, (d) =>
    d.output ? `${ok('✓')} token for ${d.subject} written to ${d.output} (mode 0600)` : d.token,
  );
}

/** The subject of `-s SUBJECT` or `-n NAME`; both are allowed only when they agree. */
function subjectOf(f: Pick<TokenGenerateOptions, 'subject' | 'name'>): string {
  if (f.subject !== undefined && f.name !== undefined && f.subject !== f.name)
    throw new PollenError('USAGE', `-s ${f.subject} and -n ${f.name} name two subjects`, {
      hint: 'Give the subject once: -s SUBJECT (or -n NAME, the same).',
    });
  const subject = f.subject ?? f.name;
  if (subject === undefined)
    throw new PollenError('USAGE', "required option '-s, --subject <SUBJECT>' not specified", {
      hint: 'Name the site (or the user e-mail with --user): -s hospital-1, or -n hospital-1 as in FLARE.',
    });
  return subject;
}
