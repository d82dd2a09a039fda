import { resolve } from 'node:path';
import { writeSecretFile } from '../../util/files.js';
import { type Output, ok } from '../output.js';
import { issue, refuseExisting, type TokenIssueOptions } from './issue.js';

export interface TokenGenerateOptions extends TokenIssueOptions {
  subject: string;
  /** Write the token to this file (0600) instead of printing it. */
  output?: string;
}

/** `pollen token generate`: one token, printed alone (details on stderr) or written to a file. */
export async function tokenGenerate(f: TokenGenerateOptions, out: Output): Promise<void> {
  if (f.output) refuseExisting(f.output, f.force);
  const issued = await issue([f.subject], f, out, false);
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
