import picocolors from 'picocolors';

/**
 * Whether to colour what a command prints, decided at each call rather than at import (as
 * picocolors does): NO_COLOR turns colour off, FORCE_COLOR on, otherwise only a terminal gets
 * it. A CI log is not a terminal, and a command run in-process sees the environment of its call.
 */
export function colorEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '') return false;
  if (env['FORCE_COLOR'] !== undefined && env['FORCE_COLOR'] !== '0') return true;
  return process.stdout.isTTY === true && env['TERM'] !== 'dumb';
}

const paint = picocolors.createColors(true);
type Style = 'bold' | 'dim' | 'green' | 'red' | 'yellow';
const style =
  (name: Style) =>
  (text: string | number): string =>
    colorEnabled() ? paint[name](text) : String(text);

/** The styles the CLI uses. */
export const pc = {
  bold: style('bold'),
  dim: style('dim'),
  green: style('green'),
  red: style('red'),
  yellow: style('yellow'),
};
