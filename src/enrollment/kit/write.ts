import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';
import { PollenError } from '../../errors.js';
import { writeFileAtomic } from '../../util/files.js';
import type { KitPlan } from './plan.js';

// Writing a planned kit: atomically per file, never into a folder that holds private keys.

/** Every `*.key` file under dir (symlinks are not followed). */
export function findPrivateKeys(dir: string, rel = ''): string[] {
  const out: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(join(dir, rel), { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...findPrivateKeys(dir, p));
    else if (/\.key(\.next)?$/.test(e.name)) out.push(p);
  }
  return out;
}

export interface WriteKitOptions {
  /** Write into an existing kit folder (generated files are replaced, others left alone). */
  force?: boolean;
}

/** Files of a previous kit in the folder that this plan no longer produces (from its manifest). */
function staleFiles(dir: string, plan: KitPlan): string[] {
  try {
    const old = JSON.parse(readFileSync(join(dir, 'startup/manifest.json'), 'utf8')) as {
      files?: Array<{ path?: unknown }>;
    };
    const keep = new Set(plan.files.map((f) => f.path));
    return (old.files ?? [])
      .map((f) => f.path)
      .filter(
        (p): p is string =>
          typeof p === 'string' &&
          !keep.has(p) &&
          p === posix.normalize(p) &&
          !p.startsWith('..') &&
          !p.startsWith('/'),
      );
  } catch {
    return [];
  }
}

/**
 * Write a planned kit into `dir`. Refuses an existing non-empty folder unless `force`, and always
 * refuses a folder holding private keys (a distributable kit must never contain one).
 */
export function writeKit(dirIn: string, plan: KitPlan, opts: WriteKitOptions = {}): string {
  const dir = resolve(dirIn);
  if (existsSync(dir)) {
    const st = lstatSync(dir);
    if (!st.isDirectory())
      throw new PollenError('FILE_EXISTS', `${dir} exists and is not a folder`, { data: { path: dir } });
    const keys = findPrivateKeys(dir);
    if (keys.length > 0)
      throw new PollenError(
        'FILE_EXISTS',
        `Refusing to write a kit into ${dir}: it holds private keys (${keys.join(', ')})`,
        {
          hint: 'A kit for distribution never contains a private key; choose an empty folder.',
          data: { path: dir, keys },
        },
      );
    if (readdirSync(dir).length > 0 && !opts.force)
      throw new PollenError('FILE_EXISTS', `${dir} already exists`, {
        hint: 'Choose another folder (-o / -w), or pass --force to replace the generated files.',
        data: { path: dir },
      });
  }
  for (const p of staleFiles(dir, plan)) rmSync(join(dir, p), { force: true });
  for (const d of [...plan.dirs].sort()) mkdirSync(join(dir, d), { recursive: true, mode: 0o755 });
  for (const f of plan.files) writeFileAtomic(join(dir, f.path), f.content, f.mode);
  return dir;
}
