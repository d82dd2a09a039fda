/** What both demos share: their workspace, their narration and their tidy end. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { bold, dim, type Output } from '../output.js';

/** The folder given, or a new temporary one. */
export function demoWorkspace(given: string | undefined): string {
  return given ? resolve(given) : mkdtempSync(join(tmpdir(), 'pollen-demo-'));
}

/** Narration goes to stdout as text; with --json to stderr, so stdout keeps one document. */
export function narrator(out: Output) {
  const say = (s: string) => (out.json ? out.progress(s) : out.line(s));
  return {
    say,
    step: (n: number, title: string, command?: string) =>
      say(`\n${bold(`${n}.`)} ${title}${command ? `\n   ${dim(`$ ${command}`)}` : ''}`),
    line: (text: string) => say(`   ${text}`),
  };
}

/** A temporary workspace holds CA keys: remove it unless asked to keep it. Whether it was removed. */
export function tidyWorkspace(workspace: string, o: { workspace?: string; keep?: boolean }): boolean {
  const removed = !o.keep && !o.workspace;
  if (removed) rmSync(workspace, { recursive: true, force: true });
  return removed;
}

/** The closing line of a demo that stopped everything it started. */
export function shutDownLine(s: { workspaceRemoved: boolean; workspace: string }): string {
  return dim(
    s.workspaceRemoved
      ? 'Everything was shut down and the temporary workspace removed (keep it with --keep or -w DIR).'
      : `Everything was shut down. Files are in ${s.workspace}`,
  );
}
