// Writes docs/cli.md from the CLI itself: every command's --help, as `pollen … --help` prints it
// (a test checks the file is current; regenerate with `npx tsx scripts/gen-cli-doc.ts`).
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { environmentVariables, SCRIPT_VARIABLES } from '../src/cli/env-options.js';
import { buildProgram } from '../src/cli/main.js';
import { renderErrorsDoc } from './gen-errors-doc.js';

/** Help is wrapped at this width whatever the terminal, so the document is the same everywhere. */
export const HELP_WIDTH = 100;

interface Entry {
  path: string[];
  cmd: Command;
}

/** Every command below `cmd`, depth first, in the order `--help` lists them (no implicit `help`). */
function walk(cmd: Command, path: string[], out: Entry[]): Entry[] {
  out.push({ path, cmd });
  const visible = new Set(cmd.createHelp().visibleCommands(cmd));
  for (const sub of cmd.commands) if (visible.has(sub)) walk(sub, [...path, sub.name()], out);
  return out;
}

/** What `pollen … --help` prints for `cmd` (the usage and the text added after it), uncoloured. */
function helpText(cmd: Command): string {
  let text = '';
  cmd.configureOutput({
    writeOut: (s) => {
      text += s;
    },
    writeErr: (s) => {
      text += s;
    },
    getOutHelpWidth: () => HELP_WIDTH,
    getErrHelpWidth: () => HELP_WIDTH,
    getOutHasColors: () => false,
    getErrHasColors: () => false,
  });
  cmd.outputHelp();
  return text.replace(/[ \t]+$/gm, '').replace(/\n+$/, '');
}

/** The exit-code table of docs/errors.md, so both documents always agree. */
function exitCodeTable(): string {
  const section = renderErrorsDoc().split('## Exit codes')[1]?.split('\n## ')[0];
  const table = section
    ?.split('\n')
    .filter((l) => l.startsWith('|'))
    .join('\n');
  if (!table) throw new Error('docs/errors.md has no "## Exit codes" table: update scripts/gen-cli-doc.ts');
  return table;
}

/** Every variable Pollen reads: the flags' (from the CLI itself), then the scripts' and apps'. */
function environmentTable(program: Command): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const rows = environmentVariables(program).map(
    (v) => `| \`${v.name}\` | ${v.flags.map((f) => `\`${f}\``).join(', ')} | ${cell(v.help)} |`,
  );
  for (const [name, help] of Object.entries(SCRIPT_VARIABLES))
    rows.push(`| \`${name}\` | (no flag) | ${cell(help)} |`);
  return ['| variable | flags (`COMMAND --flag`) | meaning |', '|---|---|---|', ...rows].join('\n');
}

function anchor(path: string[]): string {
  return path.join('-').toLowerCase();
}

export function renderCliDoc(): string {
  const program = buildProgram();
  const entries = walk(program, ['pollen'], []);
  const toc = entries
    .slice(1)
    .map(({ path }) => `${'  '.repeat(path.length - 2)}- [\`${path.join(' ')}\`](#${anchor(path)})`);
  const sections = entries.map(({ path, cmd }) => {
    const level = path.length <= 2 ? '##' : '###';
    return `${level} ${path.join(' ')}\n\n\`\`\`text\n$ ${path.join(' ')} --help\n${helpText(cmd)}\n\`\`\``;
  });
  return `# Command-line reference

Every \`pollen\` command and subcommand, with the help it prints (\`pollen COMMAND --help\`). The
step-by-step workflows are in [enrollment.md](enrollment.md); the Certificate Service's REST API is in
[api.md](api.md).

This file is generated from the CLI by \`npx tsx scripts/gen-cli-doc.ts\` (help wrapped at
${HELP_WIDTH} columns); a test fails when it is out of date.

Every command accepts \`--json\`: stdout then carries exactly one JSON document (\`{"ok": true, …}\`, or
\`{"ok": false, "error": {"code", "message", "hint"}}\`) and progress goes to stderr. Flags win over
the environment variables named in each command's help.

A mistyped command, subcommand or option gets the nearest one (\`pollen supernode lst\` →
\`(Did you mean pollen supernode list?)\`, exit 2); with \`--json\` the one document is
\`{"ok": false, "error": {"code": "USAGE", "message", "hint", "suggestion"}}\`. FLARE's spellings
work as well: options written with underscores (\`--listening_port\`, \`--listening_host\`) are read
as their hyphenated forms, \`--ca_path\` as \`--ca\`, and \`token generate -n NAME\` as \`-s NAME\`. Commands that Flower
gives an app folder before the federation (\`run\`, \`ls\`, \`log\`, \`stop\`, \`supernode
register|list|unregister\`) accept it (see [federation.md](federation.md)).

## Exit codes

${exitCodeTable()}

Each error code and its exit code are listed in [errors.md](errors.md).

## Environment variables

A flag wins over its variable.

${environmentTable(program)}

## Commands

${toc.join('\n')}

${sections.join('\n\n')}
`;
}

if (process.argv[1]?.endsWith('gen-cli-doc.ts'))
  writeFileSync(fileURLToPath(new URL('../docs/cli.md', import.meta.url)), renderCliDoc());
