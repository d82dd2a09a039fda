/**
 * Command-line habits from the tools Pollen users come from, and what a mistyped command line
 * is told: FLARE's spellings (`--listening_port`, `--ca_path`), and "did you mean" for commands,
 * subcommands and options, in the text and in the one --json document.
 */
import type { Command, CommanderError } from 'commander';
import { PollenError } from '../errors.js';
import { nearest } from '../util/text.js';

/** FLARE's long options that Pollen names otherwise (after hyphenation). */
const FLARE_NAMES: Record<string, string> = { '--ca-path': '--ca' };

/**
 * FLARE spells long options with underscores (`--listening_port`, `--ca_path`); Pollen with
 * hyphens, and the CA folder `--ca`. Rewrite the flag part of such words (never values, never
 * after `--`) so both spellings work.
 */
export function flareSpellings(args: readonly string[]): string[] {
  const end = args.indexOf('--');
  return args.map((a, i) => {
    if ((end !== -1 && i >= end) || !/^--[a-z0-9]+(?:[-_][a-z0-9]+)*(?:=|$)/i.test(a)) return a;
    return a.replace(/^--[^=]+/, (flag) => {
      const hyphenated = flag.replaceAll('_', '-');
      return FLARE_NAMES[hyphenated] ?? hyphenated;
    });
  });
}

/** The command `args` reach, and the first word that names no subcommand of it. */
function reach(program: Command, args: readonly string[]): { cmd: Command; word?: string } {
  let cmd = program;
  for (const a of args) {
    if (a.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) return { cmd, word: a };
    cmd = sub;
  }
  return { cmd };
}

/** The full name of a command: `pollen supernode list`. */
function path(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * A commander parse error as a USAGE error: its first line as the message, the nearest command,
 * subcommand or option as the hint and in `data.suggestion`. `args` are the user's words.
 */
export function usageError(e: CommanderError, program: Command, args: readonly string[]): PollenError {
  const [first = e.message, ...rest] = e.message.replace(/^error: /, '').split('\n');
  let suggestion = /^\(Did you mean (.+)\?\)$/.exec(rest.join('\n').trim())?.[1];
  let message = first;
  const { cmd, word } = reach(program, args);
  if (e.code === 'commander.unknownCommand' && suggestion) suggestion = `${path(cmd)} ${suggestion}`;
  // `pollen supernode lst`: a command that runs by itself takes the typo as an extra argument.
  if (e.code === 'commander.excessArguments' && word && cmd.commands.length > 0) {
    message = `unknown command '${path(cmd)} ${word}'`;
    const sub = nearest(
      word,
      cmd.commands.flatMap((c) => [c.name(), ...c.aliases()]),
    );
    if (sub) suggestion = `${path(cmd)} ${sub}`;
  }
  const usage = `\`${path(cmd)} --help\` shows the usage`;
  return new PollenError('USAGE', message, {
    hint: suggestion ? `Did you mean ${suggestion}? ${usage}.` : `${usage}.`,
    ...(suggestion && { data: { suggestion } }),
  });
}
