import { existsSync, mkdirSync, statSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { PollenError } from '../../errors.js';
import { writeSecretFile } from '../../util/files.js';
import { type Output, ok } from '../output.js';
import { issue, refuseExisting, subjectType, type TokenIssueOptions } from './issue.js';

export interface TokenBatchOptions extends TokenIssueOptions {
  /** How many tokens, named PREFIX-1 … PREFIX-COUNT (a string as typed: checked here). */
  count?: string;
  names?: string[];
  prefix?: string;
  /** FILE.csv, FILE.txt or a folder. */
  output: string;
}

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

/** `pollen token batch`: many tokens into a CSV, a TXT file or one file each in a folder. */
export async function tokenBatch(f: TokenBatchOptions, out: Output): Promise<void> {
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
  const { records, mode, policy } = await issue(subjects, f, out, true);
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
  out.result(
    {
      output: target,
      format,
      count: records.length,
      subjectType: subjectType(f),
      mode,
      ...(policy && { policy }),
      expiresAt: records[0]?.expiresAt ?? null,
      elapsedMs,
      signMs: Math.round(signedMs),
    },
    (d) => {
      const files = d.format === 'folder' ? 'one NAME.token file each, mode 0600' : 'mode 0600';
      const plural = d.count === 1 ? '' : 's';
      return (
        `${ok('✓')} ${d.count} ${d.subjectType} token${plural} written to ${d.output} (${files}) ` +
        `in ${(d.elapsedMs / 1000).toFixed(2)} s; expires ${d.expiresAt}`
      );
    },
  );
}
