import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { renderCliDoc } from '../../scripts/gen-cli-doc.js';
import { buildProgram } from './main.js';

const REGENERATE = 'docs/cli.md is out of date: regenerate it with `npx tsx scripts/gen-cli-doc.ts`';

describe('docs/cli.md', () => {
  const stdout = process.stdout as NodeJS.WriteStream & { isTTY: boolean; columns: number };
  const saved = { isTTY: stdout.isTTY, columns: stdout.columns };
  afterEach(() => {
    stdout.isTTY = saved.isTTY;
    stdout.columns = saved.columns;
  });

  it('is the help of the current CLI (regenerate with `npx tsx scripts/gen-cli-doc.ts`)', () => {
    const doc = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');
    expect(doc, REGENERATE).toBe(renderCliDoc());
  });

  it('has a section for every visible command and subcommand', () => {
    const doc = renderCliDoc();
    const names: string[] = [];
    const walk = (cmd: Command, path: string): void => {
      const visible = new Set(cmd.createHelp().visibleCommands(cmd));
      for (const sub of cmd.commands.filter((c) => visible.has(c))) {
        names.push(`${path} ${sub.name()}`);
        walk(sub, `${path} ${sub.name()}`);
      }
    };
    walk(buildProgram(), 'pollen');
    expect(names).toContain('pollen cert init');
    expect(names).toContain('pollen enrollment approve');
    for (const name of names) expect(doc, name).toContain(`\n$ ${name} --help\n`);
  });

  it('does not depend on the terminal width or colours', () => {
    stdout.isTTY = true;
    stdout.columns = 40;
    const narrow = renderCliDoc();
    stdout.columns = 200;
    expect(renderCliDoc()).toBe(narrow);
    expect(narrow).not.toMatch(/\u001b\[/);
  });
});
